"""The sweep's aggregation of grid points (the DVC queue runs in `make smoke`, the Ray engine in tests/test_sweep_ray.py)."""

import pytest

from pipeline.sweep import SCORES, aggregate


def test_aggregate_gives_one_row_per_grid_point_with_the_iqm_over_seeds():
    rows = [{"task": "door", "method": "maq_iql", "H": H, "K": 16, "seed": seed, **{s: float(seed * H) for s in SCORES}}
            for H in (3, 9) for seed in (1, 2)]
    table = aggregate(rows, reps=50)
    assert [(r["H"], r["n_seeds"]) for r in table] == [(3, 2), (9, 2)]
    assert table[1]["success_rate_iqm"] == pytest.approx(13.5)  # two seeds: the IQM is the mean of 9 and 18
    assert table[1]["success_rate_ci_low"] <= 13.5 <= table[1]["success_rate_ci_high"]

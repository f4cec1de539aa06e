"""Metric functions against hand-computed values (pipeline/metrics.py)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from pipeline import metrics
from pipeline.tasks import get_task

# ---------------------------------------------------------------------------------------------
# DTW


def test_dtw_of_identical_sequences_is_zero():
    x = np.random.default_rng(0).normal(size=(20, 5))
    assert metrics.dtw_distance(x, x) == 0.0
    assert metrics.dtw_distance_reference(x, x) == 0.0


def test_dtw_1d_hand_computed():
    # cost |x_i - y_j|: [[0, 2], [1, 1], [2, 0]]; best path (0,0) (1,0) (2,1) costs 0 + 1 + 0 = 1.
    x = np.array([[0.0], [1.0], [2.0]])
    y = np.array([[0.0], [2.0]])
    assert metrics.dtw_distance(x, y) == pytest.approx(1.0)
    assert metrics.dtw_distance_reference(x, y) == pytest.approx(1.0)


def test_dtw_sums_euclidean_frame_costs():
    """Pins the inner distance: frame costs 0, 5, 10 sum to 15. dtaidistance's default
    ("squared euclidean") would give sqrt(0 + 25 + 100) = 11.18 here."""
    x = np.array([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    y = np.array([[0.0, 0.0], [0.0, 0.0]])
    assert metrics.dtw_distance(x, y) == pytest.approx(15.0)
    assert metrics.dtw_distance_reference(x, y) == pytest.approx(15.0)
    assert metrics.dtw_distance(x, y) == pytest.approx(metrics.dtw_distance(y, x))
    # Sequences this short are below fastdtw's coarsening size: it runs the full DP.
    assert metrics.fastdtw_distance(x, y) == pytest.approx(15.0)


@pytest.mark.parametrize("seed, T, U, F", [(0, 50, 50, 39), (1, 37, 61, 3), (2, 1, 20, 28), (3, 80, 45, 1)])
def test_c_dtw_equals_dp_reference(seed, T, U, F):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.normal(size=(T, F)), axis=0)
    y = np.cumsum(rng.normal(size=(U, F)), axis=0)
    exact = metrics.dtw_distance_reference(x, y)
    assert metrics.dtw_distance(x, y) == pytest.approx(exact, rel=1e-12)
    # fastdtw returns the cost of some warping path: never below the optimum.
    assert metrics.fastdtw_distance(x, y) >= exact - 1e-9


def test_dtw_accepts_float32_and_non_contiguous_inputs():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(30, 8))
    y = rng.normal(size=(25, 8))
    expected = metrics.dtw_distance(x, y)
    x32 = x.astype(np.float32)
    assert metrics.dtw_distance(x32, y) == pytest.approx(metrics.dtw_distance_reference(x32, y), rel=1e-12)
    wide = np.repeat(x, 2, axis=1)[:, ::2]  # non-contiguous view equal to x
    assert not wide.flags.c_contiguous
    assert metrics.dtw_distance(wide, y) == pytest.approx(expected, rel=1e-12)


def test_dtw_rejects_mismatched_features():
    with pytest.raises(ValueError, match="feature count"):
        metrics.dtw_distance(np.zeros((3, 2)), np.zeros((3, 4)))


def test_dtw_to_references_mean_and_min():
    x = np.array([[0.0]])
    references = [np.array([[1.0]]), np.array([[3.0]]), np.array([[2.0], [2.0]])]  # DTW 1, 3, 4
    mean, minimum = metrics.dtw_to_references(x, references)
    assert mean == pytest.approx(8.0 / 3.0)
    assert minimum == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Wasserstein


def test_w1_and_w2_between_point_masses_equal_their_distance():
    x = np.tile([1.0, 1.0], (3, 1))  # three copies of one point: a point mass
    y = np.tile([4.0, 5.0], (2, 1))
    assert metrics.wasserstein_1(x, y) == pytest.approx(5.0)
    assert metrics.wasserstein_2(x, y) == pytest.approx(5.0)


def test_w1_in_1d_equals_scipy():
    rng = np.random.default_rng(5)
    u = rng.normal(size=7)
    v = rng.normal(loc=0.5, size=11)
    assert metrics.wasserstein_1(u[:, None], v[:, None]) == pytest.approx(scipy.stats.wasserstein_distance(u, v))


def test_w2_hand_computed_and_above_w1():
    # {0, 1} vs {0, 3}: the monotone matching moves 0 and 2: W1 = (0 + 2)/2 = 1, W2 = sqrt((0 + 4)/2).
    x = np.array([[0.0], [1.0]])
    y = np.array([[0.0], [3.0]])
    assert metrics.wasserstein_1(x, y) == pytest.approx(1.0)
    assert metrics.wasserstein_2(x, y) == pytest.approx(np.sqrt(2.0))

    rng = np.random.default_rng(6)
    a = rng.normal(size=(40, 3))
    b = rng.normal(size=(30, 3)) * 2.0
    assert metrics.wasserstein_2(a, b) > metrics.wasserstein_1(a, b) > 0.0


def test_standardize_together_zero_mean_unit_std_on_union():
    rng = np.random.default_rng(7)
    x = rng.normal(loc=3.0, scale=2.0, size=(20, 4))
    y = rng.normal(loc=-1.0, scale=0.5, size=(50, 4))
    x[:, 2] = 7.0  # a feature constant over the union: std 0
    y[:, 2] = 7.0
    xs, ys = metrics.standardize_together(x, y)
    union = np.concatenate([xs, ys])
    np.testing.assert_allclose(union.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(union.std(axis=0), [1.0, 1.0, 0.0, 1.0], atol=1e-12)
    assert np.all(union[:, 2] == 0.0)


def test_wasserstein_to_references_pools_and_standardizes():
    # union {0, 0, 2, 2}: mean 1, std 1, so the agent sits at -1 and the humans at +1.
    x = np.array([[0.0], [0.0]])
    references = [np.array([[2.0]]), np.array([[2.0]])]
    assert metrics.wasserstein_to_references(x, references, order=1) == pytest.approx(2.0)
    assert metrics.wasserstein_to_references(x, references, order=2) == pytest.approx(2.0)
    # the same distribution as the pooled humans: distance 0
    same = metrics.wasserstein_to_references(np.array([[0.0], [2.0]]), [np.array([[0.0]]), np.array([[2.0]])])
    assert same == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------
# Scores and success rules


def test_normalized_score_reference_returns_map_to_0_and_100():
    task = get_task("door")
    scores = metrics.normalized_score("door", np.array([task.ref_min_score, task.ref_max_score]))
    np.testing.assert_allclose(scores, [0.0, 100.0], atol=1e-9)
    assert metrics.normalized_score(task, np.array([task.ref_max_score]))[0] == pytest.approx(100.0)


def test_success_rules_on_hand_made_flags():
    flags = np.array([0, 0, 1, 1, 0])
    assert metrics.success_final(flags) is False
    assert metrics.success_ever(flags) is True
    assert metrics.success_held(flags, min_steps=1) is True  # 2 steps > 1
    assert metrics.success_held(flags, min_steps=2) is False  # 2 steps, not more than 2
    assert metrics.success_final(np.array([False, True])) is True
    assert metrics.success_ever(np.zeros(200, dtype=bool)) is False
    pen_hold = get_task("pen").success_hold_steps  # 20
    assert metrics.success_held(np.arange(200) >= 179, pen_hold) is True  # 21 steps
    assert metrics.success_held(np.arange(200) >= 180, pen_hold) is False  # 20 steps


def test_early_termination_rate():
    assert metrics.early_termination_rate(np.array([200, 150, 200, 10]), horizon=200) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="longer than the horizon"):
        metrics.early_termination_rate(np.array([201]), horizon=200)


def test_similarity_score_anchors():
    assert metrics.similarity_score(10.0, random_distance=20.0, human_distance=10.0) == pytest.approx(1.0)
    assert metrics.similarity_score(20.0, random_distance=20.0, human_distance=10.0) == pytest.approx(0.0)
    np.testing.assert_allclose(
        metrics.similarity_score(np.array([15.0, 25.0, 5.0]), 20.0, 10.0), [0.5, -0.5, 1.5]
    )
    with pytest.raises(ValueError, match="anchors are equal"):
        metrics.similarity_score(3.0, random_distance=4.0, human_distance=4.0)

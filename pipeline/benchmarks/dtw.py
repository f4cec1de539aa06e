"""Exact DTW (dtaidistance, C) against fastdtw as the official MAQ code calls it.

Workload: one evaluation's DTW on states, 100 agent episodes × 3 human test trajectories of
(200, 39) random-walk states (door's S = 39). Prints both wall times, the speed-up, the largest
absolute error of the C values against the plain DP reference, and fastdtw's mean relative error
(on the random walks, and on 30 pairs of white-noise frames where its approximation shows).

    nice -n 10 python -m pipeline.benchmarks.dtw [--agents 100] [--humans 3] [--length 200] [--features 39]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.spatial.distance import euclidean

import fastdtw as fastdtw_package
from fastdtw import fastdtw

from pipeline import metrics


def random_walks(rng: np.random.Generator, count: int, length: int, features: int) -> list[np.ndarray]:
    return [np.cumsum(rng.normal(scale=0.1, size=(length, features)), axis=0) for _ in range(count)]  # (T, S) each


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--humans", type=int, default=3)
    parser.add_argument("--length", type=int, default=200)
    parser.add_argument("--features", type=int, default=39)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    agents = random_walks(rng, args.agents, args.length, args.features)
    humans = random_walks(rng, args.humans, args.length, args.features)
    pairs = [(a, h) for a in agents for h in humans]
    metrics.dtw_distance(agents[0], humans[0])  # import dtaidistance before timing

    start = time.perf_counter()
    exact = np.array([metrics.dtw_distance(a, h) for a, h in pairs])
    t_exact = time.perf_counter() - start

    start = time.perf_counter()
    approx = np.array([fastdtw(a, h, dist=euclidean)[0] for a, h in pairs])  # the official call, radius 1
    t_fast = time.perf_counter() - start

    start = time.perf_counter()
    reference = np.array([metrics.dtw_distance_reference(a, h) for a, h in pairs])
    t_reference = time.perf_counter() - start

    n = len(pairs)
    print(f"workload: {args.agents} agent x {args.humans} human episodes = {n} pairs of "
          f"({args.length}, {args.features}) random walks")
    print(f"exact DTW (dtaidistance C):        {t_exact:8.3f} s  ({1e3 * t_exact / n:7.3f} ms/pair)")
    print(f"fastdtw radius 1 ({fastdtw.__module__}): {t_fast:8.3f} s  ({1e3 * t_fast / n:7.3f} ms/pair)")
    print(f"plain DP reference (Python):       {t_reference:8.3f} s  ({1e3 * t_reference / n:7.3f} ms/pair)")
    print(f"speed-up exact C vs fastdtw:       {t_fast / t_exact:8.1f}x  (bar: >= 20x)")
    print(f"exact C vs DP reference:           max abs error {np.max(np.abs(exact - reference)):.3e}, "
          f"max rel error {np.max(np.abs(exact - reference) / reference):.3e}")
    rel = (approx - exact) / exact
    print(f"fastdtw vs exact:                  mean rel error {rel.mean():.2e} (min {rel.min():.2e}, "
          f"max {rel.max():.2e}); fastdtw below exact in {(approx < exact - 1e-9).sum()} of {n} pairs")
    # Smooth random walks are easy for fastdtw's coarse-to-fine search; rough frames are not.
    noise = [(rng.normal(size=(args.length, args.features)), rng.normal(size=(args.length, args.features)))
             for _ in range(args.humans * 10)]
    rel_noise = np.array([fastdtw(a, h, dist=euclidean)[0] / metrics.dtw_distance(a, h) - 1.0 for a, h in noise])
    print(f"fastdtw vs exact, white-noise frames ({len(noise)} pairs): mean rel error {rel_noise.mean():.2e}, "
          f"max {rel_noise.max():.2e}, above exact in {(rel_noise > 1e-12).sum()} pairs")
    print(f"fastdtw package: {fastdtw_package.__file__}")


if __name__ == "__main__":
    main()

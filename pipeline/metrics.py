"""Evaluation metrics: task scores, success rules, and how human-like an agent's trajectories are.

All functions are pure: numpy arrays in, numbers out; no IO, no torch. One function per reported
number. The official protocol (reference/MAQ.md, "Evaluation") and where this module differs:

- DTW: per agent episode against every human test trajectory, Euclidean frame cost, total path
  cost (no normalization by length), reported as the mean over the human trajectories
  (`dtw_*_mean`) and the minimum (`min_dtw_*`), separately on states and on actions.
  `dtw_distance` is exact (dtaidistance, C). The official code uses approximate fastdtw
  (radius 1), which can only overestimate (on smooth trajectories it usually finds the optimum);
  `fastdtw_distance` reproduces those numbers when needed.
- Wasserstein: per agent episode, the agent's states (or actions) against all human test states
  (or actions) pooled, both standardized with the mean/std of their union, exact EMD with uniform
  weights (`wasserstein_to_references`). With the unsquared Euclidean cost that is W1 — what the
  official code calls "w2"; `wasserstein_2` is the true W2 (squared cost, square root).
- Success: `success_final` (the task's flag on the last step) is the paper's rule;
  `success_held` with the task's `success_hold_steps` is D4RL's own rule.
- Similarity scores: `similarity_score` maps a distance onto 1 = human-vs-human, 0 = random agent.

Shapes: `T`, `U` episode lengths, `F` features (S for states, A for actions), `n`, `m` points.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.distance import cdist, euclidean

from pipeline.tasks import Task, get_task


# ---------------------------------------------------------------------------------------------
# Dynamic time warping


def _as_sequence(x: np.ndarray, name: str) -> np.ndarray:
    """A (T, F) float64 C-contiguous copy-if-needed of `x` (what dtaidistance's C code requires)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (T, F) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _as_pair(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_sequence(x, "x"), _as_sequence(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must have the same feature count, got {x.shape} and {y.shape}")
    return x, y


def dtw_distance(x: np.ndarray, y: np.ndarray) -> float:
    """Exact DTW between x (T, F) and y (U, F): the minimal total Euclidean frame cost of a path.

    D(i, j) = ||x_i - y_j|| + min(D(i-1, j), D(i, j-1), D(i-1, j-1)); returns D(T, U). No window,
    no pruning, no length normalization. Computed by dtaidistance's C code with
    `inner_dist="euclidean"` (its default, "squared euclidean", sums squared frame costs and takes
    the square root of the total — a different number).
    """
    from dtaidistance import dtw_ndim

    x, y = _as_pair(x, y)
    return float(dtw_ndim.distance(x, y, use_c=True, inner_dist="euclidean"))


def dtw_distance_reference(x: np.ndarray, y: np.ndarray) -> float:
    """The same DTW as `dtw_distance`, by the plain O(T·U) dynamic programme (for checking it)."""
    x, y = _as_pair(x, y)
    cost = cdist(x, y, metric="euclidean").tolist()  # (T, U)
    T, U = len(cost), len(cost[0])
    inf = float("inf")
    prev = [inf] * (U + 1)  # D(i-1, ·), with D(·, 0) = inf except D(0, 0) = 0
    prev[0] = 0.0
    for i in range(T):
        row = [inf] * (U + 1)
        for j in range(U):
            row[j + 1] = cost[i][j] + min(prev[j], prev[j + 1], row[j])
        prev = row
    return prev[U]


def fastdtw_distance(x: np.ndarray, y: np.ndarray, radius: int = 1) -> float:
    """Approximate DTW as the official code computes it: `fastdtw(x, y, dist=euclidean)`.

    Same definition as `dtw_distance`, but fastdtw only searches near a coarse-resolution path, so
    it returns the cost of *a* warping path: always >= the exact value. Use it only to compare with
    numbers produced by the official code.
    """
    from fastdtw import fastdtw

    x, y = _as_pair(x, y)
    distance, _path = fastdtw(x, y, radius=radius, dist=euclidean)
    return float(distance)


DTW_METHODS = {"exact": dtw_distance, "fastdtw": fastdtw_distance}


def dtw_to_references(x: np.ndarray, references: list[np.ndarray], method: str = "exact") -> tuple[float, float]:
    """DTW of one agent episode x (T, F) against each human trajectory (U_k, F): (mean, min).

    These are one episode's `dtw_*_mean` and `min_dtw_*` (use states or actions for `*`).
    `method`: "exact", or "fastdtw" for numbers comparable with the official code's.
    """
    if len(references) == 0:
        raise ValueError("references is empty: need at least one human trajectory")
    if method not in DTW_METHODS:
        raise ValueError(f"unknown DTW method {method!r}; use one of {', '.join(DTW_METHODS)}")
    distances = np.array([DTW_METHODS[method](x, ref) for ref in references])  # (K,)
    return float(distances.mean()), float(distances.min())


# ---------------------------------------------------------------------------------------------
# Wasserstein distances between point sets


def _as_points(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]  # (n,) -> (n, 1)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"{name} must be a non-empty (n, F) array, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    return x


def _emd(cost: np.ndarray) -> float:
    """Exact optimal transport cost between uniform weights on the rows and columns of cost (n, m)."""
    import ot  # slow import (seconds): only when needed

    n, m = cost.shape
    a = np.full(n, 1.0 / n)
    b = np.full(m, 1.0 / m)
    total, log = ot.emd2(a, b, cost, numItermax=100_000_000, log=True)
    if log["result_code"] != 1:  # 1 = optimal; anything else means the value is not the EMD
        raise RuntimeError(f"ot.emd2 did not reach the optimum: {log['warning']}")
    return max(float(total), 0.0)


def wasserstein_1(x: np.ndarray, y: np.ndarray) -> float:
    """Exact W1 between the uniform distributions on x (n, F) and y (m, F), Euclidean ground cost.

    This is what the official code reports as "w2".
    """
    x, y = _as_points(x, "x"), _as_points(y, "y")
    return _emd(cdist(x, y, metric="euclidean"))  # cost (n, m)


def wasserstein_2(x: np.ndarray, y: np.ndarray) -> float:
    """Exact W2 between the uniform distributions on x (n, F) and y (m, F): sqrt of the optimal
    transport cost under the squared Euclidean ground cost. Always >= `wasserstein_1`."""
    x, y = _as_points(x, "x"), _as_points(y, "y")
    return float(np.sqrt(_emd(cdist(x, y, metric="sqeuclidean"))))  # cost (n, m)


def standardize_together(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardize x (n, F) and y (m, F) with the per-feature mean and std of their union.

    The union then has mean 0 and std 1 in every feature; a feature constant over the union
    (std 0) is only centered (becomes 0) instead of dividing by zero.
    """
    x, y = _as_points(x, "x"), _as_points(y, "y")
    union = np.concatenate([x, y], axis=0)  # (n + m, F)
    mean = union.mean(axis=0)
    std = union.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (x - mean) / std, (y - mean) / std


def wasserstein_to_references(x: np.ndarray, references: list[np.ndarray], order: int = 1) -> float:
    """Wasserstein distance of one agent episode x (T, F) to all human test frames pooled.

    The protocol: pool the human trajectories (U_k, F) into one set, standardize the agent's and the
    pooled human frames together (`standardize_together`), then exact W1 (`order=1`, the official
    "w2") or W2 (`order=2`) with uniform weights.
    """
    if len(references) == 0:
        raise ValueError("references is empty: need at least one human trajectory")
    pooled = np.concatenate([_as_points(ref, "reference") for ref in references], axis=0)  # (ΣU, F)
    x_std, pooled_std = standardize_together(x, pooled)
    if order == 1:
        return wasserstein_1(x_std, pooled_std)
    if order == 2:
        return wasserstein_2(x_std, pooled_std)
    raise ValueError(f"order must be 1 or 2, got {order!r}")


# ---------------------------------------------------------------------------------------------
# Task scores and success rules


def normalized_score(task: str | Task, returns: np.ndarray) -> np.ndarray:
    """D4RL normalized score per episode, 100 · (R − ref_min) / (ref_max − ref_min)."""
    task = get_task(task) if isinstance(task, str) else task
    return np.asarray(task.normalized_score(np.asarray(returns, dtype=np.float64)))


def _as_flags(success: np.ndarray) -> np.ndarray:
    success = np.asarray(success)
    if success.ndim != 1 or success.shape[0] == 0:
        raise ValueError(f"success must be a non-empty (T,) per-step array, got shape {success.shape}")
    return success.astype(bool)


def success_final(success: np.ndarray) -> bool:
    """The paper's rule: the episode succeeds if the success flag is set on its last step. (T,)"""
    return bool(_as_flags(success)[-1])


def success_ever(success: np.ndarray) -> bool:
    """The episode succeeds if the success flag is set on any step. (T,)"""
    return bool(_as_flags(success).any())


def success_held(success: np.ndarray, min_steps: int) -> bool:
    """D4RL's rule: success on more than `min_steps` steps (not necessarily consecutive). (T,)

    Use the task's `success_hold_steps` (25; 20 for pen).
    """
    return bool(_as_flags(success).sum() > min_steps)


def early_termination_rate(lengths: np.ndarray, horizon: int) -> float:
    """Fraction of episodes that ended before the task's horizon (length < horizon). (B,)"""
    lengths = np.asarray(lengths)
    if lengths.ndim != 1 or lengths.shape[0] == 0:
        raise ValueError(f"lengths must be a non-empty (B,) array, got shape {lengths.shape}")
    if np.any(lengths > horizon):
        raise ValueError(f"an episode is longer than the horizon {horizon}: max length {lengths.max()}")
    return float(np.mean(lengths < horizon))


# ---------------------------------------------------------------------------------------------
# Similarity scores


def similarity_score(distance, random_distance, human_distance):
    """Turn a distance (lower = more human-like) into a score where higher is better.

    score = (random_distance − distance) / (random_distance − human_distance): 1 at the
    human-vs-human level, 0 at the random agent's level; below 0 is worse than random, above 1
    closer to the humans than they are to each other. Works elementwise on arrays.
    """
    random_distance = np.asarray(random_distance, dtype=np.float64)
    human_distance = np.asarray(human_distance, dtype=np.float64)
    span = random_distance - human_distance
    if np.any(span == 0):
        raise ValueError(
            f"similarity anchors are equal (random_distance={random_distance}, "
            f"human_distance={human_distance}): the scale is undefined"
        )
    score = (random_distance - np.asarray(distance, dtype=np.float64)) / span
    return float(score) if score.ndim == 0 else score

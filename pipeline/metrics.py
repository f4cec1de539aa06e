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

Beyond the official code (issue 14), two measures that do not rest on one distance:
- Discriminator AUC (`windows`, `discriminator_auc`): how well a classifier, cross-validated with
  episodes grouped, tells agent (s, a) windows from human ones; 0.5 = indistinguishable.
- Smoothness (`action_jerk`, `log_dimensionless_jerk`, `smoothness_ratio`): jerk of the actions and
  LDLJ of the hand joints' velocities, as a ratio to the humans' median.

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


# ---------------------------------------------------------------------------------------------
# Discriminator AUC: can a classifier tell agent windows from human windows?

DISCRIMINATORS = ("logistic", "boosting")


def _standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray, name: str) -> np.ndarray:
    """(x - mean) / std for x (T, F) with per-feature mean, std (F,); a feature with std 0 is only centered."""
    mean, std = np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)
    if mean.shape != (x.shape[1],) or std.shape != (x.shape[1],):
        raise ValueError(
            f"{name}_mean and {name}_std must have shape ({x.shape[1]},), got {mean.shape} and {std.shape}"
        )
    return (x - mean) / np.where(std > 0, std, 1.0)


def windows(
    obs: np.ndarray,
    actions: np.ndarray,
    H: int,
    stride: int,
    state_mean: np.ndarray,
    state_std: np.ndarray,
    action_mean: np.ndarray,
    action_std: np.ndarray,
) -> np.ndarray:
    """The discriminator's inputs from one episode: standardized (state, action) windows, (N, H·(S+A)).

    obs (T, S) and actions (T, A), obs[t] being the state before action t. Windows start at
    t = 0, stride, 2·stride, ... while t + H <= T; each row is obs[t:t+H] flattened (H·S values)
    followed by actions[t:t+H] flattened (H·A values). States and actions are standardized with the
    given train-split statistics, mean and std (S,) or (A,); a std of 0 counts as 1. An episode
    shorter than H gives no windows: shape (0, H·(S+A)).
    """
    obs, actions = np.asarray(obs, dtype=np.float64), np.asarray(actions, dtype=np.float64)
    if obs.ndim != 2 or actions.ndim != 2 or obs.shape[0] != actions.shape[0]:
        raise ValueError(
            f"obs and actions must be (T, S) and (T, A) with the same T, got {obs.shape} and {actions.shape}"
        )
    if H < 1 or stride < 1:
        raise ValueError(f"H and stride must be >= 1, got H={H}, stride={stride}")
    obs = _standardize(obs, state_mean, state_std, "state")
    actions = _standardize(actions, action_mean, action_std, "action")
    (T, S), A = obs.shape, actions.shape[1]
    steps = np.arange(0, T - H + 1, stride)[:, None] + np.arange(H)  # (N, H)
    N = steps.shape[0]
    return np.concatenate([obs[steps].reshape(N, H * S), actions[steps].reshape(N, H * A)], axis=1)


def _make_discriminator(classifier: str, seed: int):
    """A fresh, unfitted sklearn classifier for one of `DISCRIMINATORS`."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if classifier == "logistic":
        return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
    # early_stopping=False: "auto" would switch it on (with a random validation split) above 10 000 windows.
    # 32 bins and 15 leaves: 7x faster than sklearn's defaults (255, 31) on ~700 x 600 windows, one thread
    return HistGradientBoostingClassifier(max_iter=100, max_bins=32, max_leaf_nodes=15, early_stopping=False, random_state=seed)


def _as_episode_windows(episodes: list[np.ndarray], name: str) -> list[np.ndarray]:
    """The episodes' (N_i, F) window arrays as float64, leaving out episodes without windows."""
    episodes = [np.asarray(e, dtype=np.float64) for e in episodes]
    if any(e.ndim != 2 or not np.all(np.isfinite(e)) for e in episodes):
        raise ValueError(f"each {name} episode must be a finite (N_i, F) array of windows")
    return [e for e in episodes if len(e) > 0]


def _episode_pair_wins(agent_scores: list[np.ndarray], human_scores: list[np.ndarray]) -> np.ndarray:
    """(n_agent, n_human): for each pair of episodes, the number of (agent window, human window)
    pairs in which the agent window scores higher, ties counting 1/2 (the Mann–Whitney count).

    The ROC AUC of any multiset of episodes with counts c_agent, c_human is then
    c_agent · wins · c_human / (windows of the agent episodes · windows of the human episodes).
    """
    wins = np.empty((len(agent_scores), len(human_scores)))
    for h, human in enumerate(human_scores):
        human = np.sort(human)
        for a, agent in enumerate(agent_scores):
            below = np.searchsorted(human, agent, "left") + np.searchsorted(human, agent, "right")  # 2·(< + ½·=)
            wins[a, h] = below.sum() / 2
    return wins


def discriminator_auc(
    agent: list[np.ndarray],
    human: list[np.ndarray],
    *,
    classifier: str,
    folds: int = 5,
    bootstrap_reps: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """A Turing-test proxy: the cross-validated ROC AUC of a classifier telling agent windows (label 1)
    from human windows (label 0), with a bootstrap confidence interval. 0.5 = indistinguishable.

    agent, human: one (N_i, F) array of windows (`windows`) per episode; episodes without windows
    are left out. Cross-validation is grouped by episode (sklearn `StratifiedGroupKFold`, shuffled
    with `seed`), so no episode is in both a training and a test fold; n_splits is `folds`, capped
    by the episode count of the smaller class (each fold then holds episodes of both classes). The
    AUC is over all out-of-fold window scores. The interval resamples agent episodes and human
    episodes with replacement, separately, recomputes the AUC on the out-of-fold scores of the
    resampled windows, and takes the `confidence` percentile interval.

    classifier: "logistic" (standardize, then L2 logistic regression, C=1: it only sees differences
    in the mean of window features, not e.g. in their variance) or "boosting" (HistGradientBoosting,
    100 iterations; nonlinear, much slower). Fitting runs on one thread, so the result is identical
    on every machine. Returns {"auc", "ci_low", "ci_high"}.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold
    from threadpoolctl import threadpool_limits

    if classifier not in DISCRIMINATORS:
        raise ValueError(f"unknown classifier {classifier!r}; use one of {', '.join(DISCRIMINATORS)}")
    if folds < 2 or bootstrap_reps < 1 or not 0 < confidence < 1:
        raise ValueError(
            f"need folds >= 2, bootstrap_reps >= 1 and 0 < confidence < 1, "
            f"got folds={folds}, bootstrap_reps={bootstrap_reps}, confidence={confidence}"
        )
    agent, human = _as_episode_windows(agent, "agent"), _as_episode_windows(human, "human")
    if min(len(agent), len(human)) < 2:
        raise ValueError(
            f"need at least 2 episodes with windows in each class, got {len(agent)} agent and {len(human)} "
            "human: grouped cross-validation must hold out an episode and still train on its class"
        )
    feature_counts = {e.shape[1] for e in agent + human}
    if len(feature_counts) != 1:
        raise ValueError(f"all windows must have the same feature count F, got {sorted(feature_counts)}")

    episodes = agent + human
    sizes = [len(e) for e in episodes]
    x = np.concatenate(episodes)  # (N, F)
    groups = np.repeat(np.arange(len(episodes)), sizes)  # (N,) episode index
    y = (groups < len(agent)).astype(int)  # (N,) agent 1, human 0
    cv = StratifiedGroupKFold(n_splits=min(folds, len(agent), len(human)), shuffle=True, random_state=seed)
    scores = np.empty(len(y))  # (N,) out-of-fold P(agent)
    with threadpool_limits(limits=1):
        for train, test in cv.split(x, y, groups):
            model = _make_discriminator(classifier, seed).fit(x[train], y[train])
            scores[test] = model.predict_proba(x[test])[:, 1]
    auc = float(roc_auc_score(y, scores))

    per_episode = np.split(scores, np.cumsum(sizes)[:-1])
    wins = _episode_pair_wins(per_episode[: len(agent)], per_episode[len(agent) :])  # (n_agent, n_human)
    rng = np.random.default_rng(seed)
    n_agent, n_human = len(agent), len(human)
    counts_agent = rng.multinomial(n_agent, np.full(n_agent, 1 / n_agent), size=bootstrap_reps)  # (R, n_agent)
    counts_human = rng.multinomial(n_human, np.full(n_human, 1 / n_human), size=bootstrap_reps)  # (R, n_human)
    pairs = (counts_agent @ sizes[:n_agent]) * (counts_human @ sizes[n_agent:])  # (R,) window pairs
    aucs = np.einsum("ra,ah,rh->r", counts_agent, wins, counts_human) / pairs  # (R,)
    ci_low, ci_high = np.quantile(aucs, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"auc": auc, "ci_low": float(ci_low), "ci_high": float(ci_high)}


# ---------------------------------------------------------------------------------------------
# Smoothness


def _as_trajectory(x: np.ndarray, dt: float, name: str) -> np.ndarray:
    """x as a finite (T, F) float64 array with T >= 4 (a 1-D x is one feature); dt must be > 0."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]  # (T,) -> (T, 1)
    if x.ndim != 2 or x.shape[0] < 4:
        raise ValueError(f"{name} must be a (T, F) array with T >= 4 (a third difference), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or inf")
    if not dt > 0:
        raise ValueError(f"dt must be > 0, got {dt}")
    return x


def action_jerk(actions: np.ndarray, dt: float) -> float:
    """Mean squared jerk of an action sequence (T, A) sampled every dt; lower is smoother.

    jerk_t = (a[t+3] − 3·a[t+2] + 3·a[t+1] − a[t]) / dt³, (T−3, A); returns the mean over t of
    ||jerk_t||² (summed over the A dims). Needs T >= 4.
    """
    actions = _as_trajectory(actions, dt, "actions")
    jerk = np.diff(actions, n=3, axis=0) / dt**3  # (T-3, A)
    return float(np.mean(np.sum(jerk**2, axis=1)))


def log_dimensionless_jerk(positions: np.ndarray, dt: float) -> float:
    """LDLJ of a movement (Hogan & Sternad 2009; Balasubramanian et al. 2015); higher (less
    negative) is smoother. Invariant to the movement's amplitude and duration.

    positions (T, J), e.g. hand joint angles, sampled every dt. With the joint velocity vector
    v = Δpositions / dt, (T−1, J): LDLJ = −ln( duration³ / v_peak² · ∫ ||d²v/dt²||² dt ), where
    duration = (T−2)·dt, v_peak = max_t ||v_t||, and the integral is the rectangle rule over the
    second differences of v, (T−3, J). A motionless episode (v_peak = 0) has no LDLJ: returns nan
    (skip it, e.g. with `smoothness_ratio`'s nanmedian). Needs T >= 4.
    """
    positions = _as_trajectory(positions, dt, "positions")
    velocity = np.diff(positions, axis=0) / dt  # (T-1, J)
    v_peak = np.linalg.norm(velocity, axis=1).max()
    if v_peak == 0:
        return float("nan")
    d2v = np.diff(velocity, n=2, axis=0) / dt**2  # (T-3, J)
    duration = (len(velocity) - 1) * dt
    return float(-np.log(duration**3 / v_peak**2 * np.sum(d2v**2) * dt))


def _median_skipping_nan(values: np.ndarray) -> float:
    """Median of the non-NaN values, nan if there are none (np.nanmedian, without its warning)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else float("nan")


def smoothness_ratio(values: np.ndarray, human_values: np.ndarray) -> float:
    """nanmedian(values) / nanmedian(human_values): the agent's per-episode smoothness against the humans'.

    For `action_jerk`, 1 = as smooth as the humans, > 1 jerkier. For `log_dimensionless_jerk` both
    medians are negative, so again > 1 = less smooth than the humans. NaNs (motionless episodes)
    are skipped; if all agent values are NaN the ratio is nan.
    """
    median, human_median = _median_skipping_nan(values), _median_skipping_nan(human_values)
    if human_median == 0 or np.isnan(human_median):
        raise ValueError(f"the human median is {human_median} (all NaN or no values?): the ratio is undefined")
    return median / human_median

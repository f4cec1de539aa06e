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


# ---------------------------------------------------------------------------------------------
# Discriminator AUC


def _standard_windows(obs, actions, H=4, stride=2):
    S, A = obs.shape[1], actions.shape[1]
    return metrics.windows(obs, actions, H, stride, np.zeros(S), np.ones(S), np.zeros(A), np.ones(A))


def test_windows_shapes_stride_and_standardization():
    T, S, A, H = 7, 2, 1, 3
    obs = np.arange(T * S, dtype=float).reshape(T, S)
    obs[:, 1] = 5.0  # a constant state feature: std 0, only centered
    actions = np.arange(T, dtype=float)[:, None] * 10.0
    state_mean, state_std = np.array([1.0, 5.0]), np.array([2.0, 0.0])
    action_mean, action_std = np.array([10.0]), np.array([5.0])
    w = metrics.windows(obs, actions, H, 2, state_mean, state_std, action_mean, action_std)
    assert w.shape == (3, H * (S + A))  # starts 0, 2, 4 (4 + 3 <= 7; 6 + 3 > 7)
    obs_std = (obs - state_mean) / np.array([2.0, 1.0])
    act_std = (actions - action_mean) / 5.0
    np.testing.assert_array_equal(w[1], np.concatenate([obs_std[2:5].ravel(), act_std[2:5].ravel()]))
    assert np.all(w[:, [1, 3, 5]] == 0.0)  # the constant feature, centered
    assert metrics.windows(obs, actions, H, 1, state_mean, state_std, action_mean, action_std).shape == (T - H + 1, 9)
    assert metrics.windows(obs, actions, T, 3, state_mean, state_std, action_mean, action_std).shape == (1, 21)
    short = metrics.windows(obs[:2], actions[:2], H, 1, state_mean, state_std, action_mean, action_std)
    assert short.shape == (0, 9)


def test_windows_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same T"):
        _standard_windows(np.zeros((5, 2)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"state_mean and state_std must have shape \(2,\)"):
        metrics.windows(np.zeros((5, 2)), np.zeros((5, 1)), 2, 1, np.zeros(3), np.ones(3), np.zeros(1), np.ones(1))


def test_episode_pair_wins_reproduce_roc_auc_of_resampled_episodes():
    """The bootstrap's AUC formula equals sklearn's AUC on the resampled windows, ties included."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(8)
    agent = [rng.integers(0, 5, size=n) / 4 for n in (3, 7, 5)]  # few distinct values: many ties
    human = [rng.integers(0, 5, size=n) / 4 for n in (4, 6)]
    wins = metrics._episode_pair_wins(agent, human)
    for counts_agent, counts_human in [([1, 1, 1], [1, 1]), ([0, 2, 1], [2, 0]), ([3, 0, 0], [1, 1])]:
        a = np.concatenate([e for e, c in zip(agent, counts_agent) for _ in range(c)])
        h = np.concatenate([e for e, c in zip(human, counts_human) for _ in range(c)])
        expected = roc_auc_score(np.r_[np.ones(len(a)), np.zeros(len(h))], np.r_[a, h])
        pairs = np.dot(counts_agent, [3, 7, 5]) * np.dot(counts_human, [4, 6])
        assert np.dot(counts_agent, wins @ counts_human) / pairs == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("classifier", metrics.DISCRIMINATORS)
def test_discriminator_auc_near_half_for_the_same_distribution(classifier):
    rng = np.random.default_rng(9)
    agent = [rng.normal(size=(20, 20)) for _ in range(8)]
    human = [rng.normal(size=(20, 20)) for _ in range(6)]
    result = metrics.discriminator_auc(agent, human, classifier=classifier, bootstrap_reps=200)
    assert 0.35 <= result["auc"] <= 0.65
    assert result["ci_low"] <= result["auc"] <= result["ci_high"]


@pytest.mark.parametrize("classifier", metrics.DISCRIMINATORS)
def test_discriminator_auc_separates_random_from_smooth_actions(classifier):
    """Same (white-noise) states; the agent's actions are uniform ±1 noise, the humans' smooth
    sinusoids around 0.7. The offset is for "logistic": without it the two differ only in variance
    and autocorrelation, which a linear discriminator cannot see (it then scores about 0.4-0.6,
    while "boosting" still scores 1.0)."""
    rng = np.random.default_rng(10)
    t = np.arange(48)[:, None] * 0.1

    def episode(actions):  # (T=48, A=3) -> (N=21, H·(S+A)=48)
        return _standard_windows(rng.normal(size=(48, 3)), actions, H=8)

    agent = [episode(rng.choice([-1.0, 1.0], size=(48, 3))) for _ in range(6)]
    smooth = [0.7 + 0.3 * np.sin(t * rng.uniform(1, 2, size=3) + rng.uniform(0, 6, size=3)) for _ in range(5)]
    human = [episode(actions) for actions in smooth]
    result = metrics.discriminator_auc(agent, human, classifier=classifier)
    assert result["auc"] >= 0.95
    assert result["ci_low"] >= 0.9


@pytest.mark.parametrize("classifier", metrics.DISCRIMINATORS)
def test_discriminator_auc_cannot_learn_episode_identity(classifier):
    """Every episode has its own constant offset vector (its identity), drawn from one distribution
    for both classes. Ungrouped cross-validation memorizes the offsets of the episodes it trained on
    and reaches AUC >= 0.85 here; the grouped cross-validation tests on unseen episodes: near 0.5."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    rng = np.random.default_rng(0)

    def episode():
        return rng.normal(size=120) + 0.5 * rng.normal(size=(4, 120))  # (N=4, F=120)

    agent, human = [episode() for _ in range(50)], [episode() for _ in range(50)]
    grouped = metrics.discriminator_auc(agent, human, classifier=classifier, bootstrap_reps=100)["auc"]
    assert 0.3 <= grouped <= 0.7

    x, y = np.concatenate(agent + human), np.repeat([1, 0], 200)
    ungrouped_cv = StratifiedKFold(5, shuffle=True, random_state=0)
    model = metrics._make_discriminator(classifier, seed=0)
    scores = cross_val_predict(model, x, y, cv=ungrouped_cv, method="predict_proba")[:, 1]
    assert roc_auc_score(y, scores) >= 0.85  # the leak is real: the grouped test above has teeth


@pytest.mark.parametrize("classifier", metrics.DISCRIMINATORS)
def test_discriminator_auc_is_deterministic(classifier):
    rng = np.random.default_rng(11)
    agent = [rng.normal(0.3, size=(15, 12)) for _ in range(4)]
    human = [rng.normal(size=(n, 12)) for n in (10, 20, 0, 15)]  # an episode without windows is left out
    first = metrics.discriminator_auc(agent, human, classifier=classifier, seed=3)
    assert metrics.discriminator_auc(agent, human, classifier=classifier, seed=3) == first
    assert set(first) == {"auc", "ci_low", "ci_high"}


def test_discriminator_auc_rejects_bad_input():
    rng = np.random.default_rng(12)
    two = [rng.normal(size=(5, 3)) for _ in range(2)]
    with pytest.raises(ValueError, match="at least 2 episodes with windows in each class, got 1 agent"):
        metrics.discriminator_auc(two[:1], two, classifier="logistic")
    with pytest.raises(ValueError, match="got 2 agent and 1 human"):
        metrics.discriminator_auc(two, [two[0], np.zeros((0, 3))], classifier="logistic")
    with pytest.raises(ValueError, match="same feature count"):
        metrics.discriminator_auc(two, [two[0], rng.normal(size=(5, 4))], classifier="logistic")
    with pytest.raises(ValueError, match="unknown classifier 'forest'"):
        metrics.discriminator_auc(two, two, classifier="forest")
    with pytest.raises(ValueError, match="folds >= 2"):
        metrics.discriminator_auc(two, two, classifier="logistic", folds=1)


# ---------------------------------------------------------------------------------------------
# Smoothness


def _minimum_jerk(duration, dt):
    """A minimum-jerk reach from 0 to 1 over `duration`, sampled every dt: (T,)."""
    tau = np.linspace(0.0, 1.0, int(round(duration / dt)) + 1)
    return 10 * tau**3 - 15 * tau**4 + 6 * tau**5


@pytest.mark.parametrize("dt", [1.0, 0.05])
def test_action_jerk_of_a_cubic(dt):
    t = np.arange(12)[:, None] * dt
    assert metrics.action_jerk(np.tile(t**3, (1, 3)), dt) == pytest.approx(36.0 * 3)  # jerk 6 in 3 dims
    assert metrics.action_jerk(2.0 * t**2 - t, dt) == pytest.approx(0.0, abs=1e-6)  # a quadratic has no jerk
    with pytest.raises(ValueError, match="T >= 4"):
        metrics.action_jerk(t[:3], dt)


def test_ldlj_of_a_minimum_jerk_reach():
    # analytically: v_peak = 15/8 / D and ∫ (d²v/dt²)² dt = 720 / D⁵, so LDLJ = −ln(720 / (15/8)²) = −5.322
    assert metrics.log_dimensionless_jerk(_minimum_jerk(1.0, 1e-3), 1e-3) == pytest.approx(-np.log(204.8), rel=0.01)


def test_ldlj_is_invariant_to_amplitude_and_duration():
    reach = _minimum_jerk(1.0, 0.01)[:, None] * np.array([[1.0, -0.3, 2.0]])  # (T, J=3) joint angles
    ldlj = metrics.log_dimensionless_jerk(reach, 0.01)
    assert metrics.log_dimensionless_jerk(5.0 * reach, 0.01) == pytest.approx(ldlj, rel=1e-9)
    assert metrics.log_dimensionless_jerk(reach, 0.03) == pytest.approx(ldlj, rel=1e-9)  # same samples, slower
    slow = _minimum_jerk(2.0, 0.01)[:, None] * np.array([[1.0, -0.3, 2.0]])  # twice the samples
    assert metrics.log_dimensionless_jerk(slow, 0.01) == pytest.approx(ldlj, rel=0.03)


def test_ldlj_noise_is_less_smooth_and_motionless_is_nan():
    reach = _minimum_jerk(1.0, 0.01)[:, None] * np.array([[1.0, 0.5]])
    noisy = reach + np.random.default_rng(13).normal(scale=1e-3, size=reach.shape)
    assert metrics.log_dimensionless_jerk(noisy, 0.01) < metrics.log_dimensionless_jerk(reach, 0.01) - 1.0
    assert np.isnan(metrics.log_dimensionless_jerk(np.ones((10, 2)), 0.01))


def test_smoothness_ratio():
    agent_jerk, human_jerk = np.array([2.0, 4.0, np.nan, 3.0]), np.array([1.0, 2.0, 3.0])
    assert metrics.smoothness_ratio(agent_jerk, human_jerk) == pytest.approx(1.5)  # medians 3 / 2: jerkier
    # LDLJ: both negative, -8 / -5 = 1.6 > 1: the agent is less smooth
    assert metrics.smoothness_ratio(np.array([-8.0]), np.array([-5.0, np.nan])) == pytest.approx(1.6)
    assert np.isnan(metrics.smoothness_ratio(np.array([np.nan]), np.array([1.0])))
    with pytest.raises(ValueError, match="human median is 0.0"):
        metrics.smoothness_ratio(np.array([1.0]), np.array([0.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="human median is nan"):
        metrics.smoothness_ratio(np.array([1.0]), np.array([np.nan]))

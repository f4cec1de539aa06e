"""Minimum-jerk movement profiles (Flash & Hogan, 1985).

A person's point-to-point reach follows, to a good approximation, the path that minimizes the
integrated squared jerk. For a movement of duration `D` from `x0` to `x1` the solution is
`x(t) = x0 + (x1 - x0) * s(t / D)` with the quintic `s(τ) = 10τ³ − 15τ⁴ + 6τ⁵`, whose velocity
and acceleration are zero at both ends. Chaining such segments between keyframes gives a smooth
plan whose velocity and acceleration are continuous everywhere (both are zero at keyframes).

`curved_segment` lets the vertical component run on its own time window inside the segment
(e.g. lift first, then carry): people lead with the vertical when they reach over things.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def min_jerk(tau: np.ndarray | float) -> np.ndarray:
    """s(τ) = 10τ³ − 15τ⁴ + 6τ⁵ for τ clipped to [0, 1]: position fraction of a min-jerk move."""
    tau = np.clip(np.asarray(tau, dtype=np.float64), 0.0, 1.0)
    return tau**3 * (10.0 - 15.0 * tau + 6.0 * tau**2)


def min_jerk_velocity(tau: np.ndarray | float) -> np.ndarray:
    """ds/dτ = 30τ² − 60τ³ + 30τ⁴ (zero at both ends; 1.875 at the middle)."""
    tau = np.clip(np.asarray(tau, dtype=np.float64), 0.0, 1.0)
    return 30.0 * tau**2 * (1.0 - tau) ** 2


def min_jerk_acceleration(tau: np.ndarray | float) -> np.ndarray:
    """d²s/dτ² = 60τ − 180τ² + 120τ³ (zero at both ends)."""
    tau = np.clip(np.asarray(tau, dtype=np.float64), 0.0, 1.0)
    return 60.0 * tau - 180.0 * tau**2 + 120.0 * tau**3


def _window(tau: np.ndarray, start: float, end: float) -> np.ndarray:
    """Map τ in [start, end] (fractions of the segment) onto [0, 1]."""
    return (tau - start) / max(end - start, 1e-9)


@dataclass(frozen=True)
class Keyframe:
    """A point of a plan: reached at `time` (s) with zero velocity.

    `vertical` and `horizontal` are the windows (fractions of the segment that ends here) in
    which the z and the x/y components of a Cartesian path move; (0, 1) for both is a straight
    min-jerk line. Joint-space plans ignore them.
    """

    time: float
    value: np.ndarray
    vertical: tuple[float, float] = (0.0, 1.0)
    horizontal: tuple[float, float] = (0.0, 1.0)


def sample_plan(keyframes: list[Keyframe], times: np.ndarray, cartesian: bool = False) -> np.ndarray:
    """Evaluate a chain of min-jerk segments at `times` (T,) → (T, V).

    Before the first keyframe the plan holds its first value; after the last, its last value.
    With `cartesian=True` the values are 3-D points and the last component (z) moves in each
    keyframe's `vertical` window, x and y in its `horizontal` window (curved reaches).
    """
    if not keyframes:
        raise ValueError("a plan needs at least one keyframe")
    if any(b.time < a.time for a, b in zip(keyframes, keyframes[1:])):
        raise ValueError("keyframe times must be non-decreasing")
    times = np.asarray(times, dtype=np.float64)
    out = np.empty((len(times), len(keyframes[0].value)))
    out[:] = keyframes[0].value
    for prev, key in zip(keyframes, keyframes[1:]):
        duration = key.time - prev.time
        if duration <= 0:
            continue
        tau = (times - prev.time) / duration
        mask = times > prev.time
        delta = np.asarray(key.value, dtype=np.float64) - np.asarray(prev.value, dtype=np.float64)
        if cartesian:
            s_h = min_jerk(_window(tau[mask], *key.horizontal))
            s_v = min_jerk(_window(tau[mask], *key.vertical))
            out[mask, :2] = prev.value[:2] + s_h[:, None] * delta[:2]
            out[mask, 2] = prev.value[2] + s_v * delta[2]
        else:
            out[mask] = prev.value + min_jerk(tau[mask])[:, None] * delta
    return out

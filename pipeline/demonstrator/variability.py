"""Human motor variability, drawn once per episode from a seeded generator.

No two human demonstrations are alike. The demonstrator reproduces the main, well documented
sources of trial-to-trial variability so that the demonstrations spread the way a person's do:

- reaction time before the first movement: U(0.06, 0.18) s;
- movement durations scaled by a log-normal factor exp(N(0, 0.15²)) per phase;
- transport time from Fitts' law, `MT = a + b log2(2D / W)`;
- scatter of grasp and end points, 3–10 mm;
- physiological tremor: 8–12 Hz, about 0.7 mm, slowly amplitude-modulated;
- slow postural drift: an Ornstein–Uhlenbeck process, low-passed so the actions stay smooth;
- signal-dependent motor noise (Harris & Wolpert 1998): an execution error whose size grows with the
  planned speed, smooth (low-passed, σ 50 ms), which the demonstrator's feedback then corrects.

Everything is a pure function of the generator, so an episode is reproducible from its seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d

REACTION_DELAY_S = (0.06, 0.18)
DURATION_LOG_SD = 0.15
SCATTER_M = (0.003, 0.010)
TREMOR_HZ = (8.0, 12.0)
TREMOR_AMPLITUDE_M = 0.0007
DRIFT_SD_M = 0.002
DRIFT_TIME_CONSTANT_S = 0.5
FITTS_A_S = 0.15  # Fitts' law intercept (s)
FITTS_B_S = 0.10  # Fitts' law slope (s per bit)
MOTOR_NOISE_S = 0.02  # SD of the execution error per unit of planned joint speed (m per m/s, rad per rad/s)
MOTOR_NOISE_SMOOTHING_S = 0.05  # σ of the Gaussian low-pass of that noise


@dataclass
class HumanVariability:
    """Per-episode human variability; `rng` is the episode's own generator."""

    rng: np.random.Generator
    reaction_delay: float = field(init=False)

    def __post_init__(self) -> None:
        self.reaction_delay = float(self.rng.uniform(*REACTION_DELAY_S))

    def duration(self, nominal: float) -> float:
        """A phase that nominally lasts `nominal` seconds, as this person does it this time."""
        return float(nominal * np.exp(self.rng.normal(0.0, DURATION_LOG_SD)))

    def fitts_time(self, distance: float, width: float) -> float:
        """Movement time for a reach of `distance` to a target of size `width` (Fitts' law)."""
        index_of_difficulty = np.log2(max(2.0 * distance / width, 1.0))
        return self.duration(FITTS_A_S + FITTS_B_S * index_of_difficulty)

    def scatter(self, dims: int = 3, scale: tuple[float, float] = SCATTER_M) -> np.ndarray:
        """An end-point error: a random direction, magnitude U(3, 10) mm."""
        direction = self.rng.normal(size=dims)
        direction /= np.linalg.norm(direction) + 1e-12
        return direction * self.rng.uniform(*scale)

    def tremor(self, times: np.ndarray) -> np.ndarray:
        """Physiological tremor (T, 3): per axis a 8–12 Hz oscillation of ~0.7 mm, slowly modulated."""
        times = np.asarray(times, dtype=np.float64)
        freq = self.rng.uniform(*TREMOR_HZ, size=3)
        phase = self.rng.uniform(0, 2 * np.pi, size=3)
        mod_freq = self.rng.uniform(0.3, 1.0, size=3)
        mod_phase = self.rng.uniform(0, 2 * np.pi, size=3)
        envelope = 1.0 + 0.3 * np.sin(2 * np.pi * mod_freq * times[:, None] + mod_phase)
        return TREMOR_AMPLITUDE_M * envelope * np.sin(2 * np.pi * freq * times[:, None] + phase)

    def drift(self, times: np.ndarray) -> np.ndarray:
        """Slow drift (T, 3): OU process (σ ≈ 2 mm, τ = 0.5 s) passed through a 2 Hz two-pole low-pass."""
        times = np.asarray(times, dtype=np.float64)
        dt = float(times[1] - times[0]) if len(times) > 1 else 0.01
        decay = np.exp(-dt / DRIFT_TIME_CONSTANT_S)
        noise = self.rng.normal(size=(len(times), 3)) * DRIFT_SD_M * np.sqrt(1 - decay**2)
        ou = np.zeros((len(times), 3))
        x = self.rng.normal(size=3) * DRIFT_SD_M
        for i in range(len(times)):
            x = decay * x + noise[i]
            ou[i] = x
        alpha = 1 - np.exp(-2 * np.pi * 2.0 * dt)
        for _ in range(2):  # two first-order passes: a smooth, critically damped low-pass
            y = ou[0].copy()
            for i in range(len(times)):
                y = y + alpha * (ou[i] - y)
                ou[i] = y
        return ou - ou[0]  # start from the planned point; drift accumulates from there

    def motor_noise(self, speed: np.ndarray, dt: float) -> np.ndarray:
        """Signal-dependent execution error (T, J), in joint units: per joint, smooth unit-SD Gaussian noise
        (white noise low-passed with σ = `MOTOR_NOISE_SMOOTHING_S`) times `MOTOR_NOISE_S` × the planned
        joint speed `speed` (T, J). Large during a fast reach, nothing while the plan holds still."""
        speed = np.asarray(speed, dtype=np.float64)
        sigma = MOTOR_NOISE_SMOOTHING_S / dt  # in steps
        pad = int(np.ceil(4 * sigma))
        white = self.rng.normal(size=(len(speed) + 2 * pad, speed.shape[1]))
        smooth = gaussian_filter1d(white, sigma, axis=0, mode="constant")[pad : pad + len(speed)]
        smooth /= np.sqrt(1.0 / (2.0 * np.sqrt(np.pi) * sigma))  # unit SD: a Gaussian filter of white noise has SD (2√π σ)^-½
        return smooth * MOTOR_NOISE_S * speed

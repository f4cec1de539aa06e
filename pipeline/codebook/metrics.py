"""Codebook metrics: pure numpy functions, one per reported number (no IO, no torch)."""

from __future__ import annotations

import numpy as np


def macro_mse(predicted: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error over every element of (N, H, A) macros, in the units given (env units)."""
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    if predicted.shape != target.shape:
        raise ValueError(f"shapes differ: {predicted.shape} vs {target.shape}")
    return float(np.mean((predicted - target) ** 2))


def mean_macro_baseline_mse(train_macro: np.ndarray, test_macro: np.ndarray) -> float:
    """MSE on test windows of always predicting the mean train macro (H, A): the bar to beat."""
    mean_macro = np.asarray(train_macro, np.float64).mean(axis=0)  # (H, A)
    return macro_mse(np.broadcast_to(mean_macro, np.shape(test_macro)), test_macro)


def code_counts(code: np.ndarray, K: int) -> np.ndarray:
    """How many windows chose each code: (N,) ints < K -> (K,) int64."""
    return np.bincount(np.asarray(code, dtype=np.int64), minlength=K).astype(np.int64)


def perplexity(counts: np.ndarray) -> float:
    """exp(entropy) of the code distribution: 1 if one code takes all, K if all are equally used."""
    counts = np.asarray(counts, np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def used_codes(counts: np.ndarray) -> int:
    """Codes chosen by at least one window."""
    return int(np.sum(np.asarray(counts) > 0))

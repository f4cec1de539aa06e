"""Macro Action Quantization codebook: a state-conditioned VQ-VAE over H-step macro actions.

    model.py    the network, the quantizer and `Codebook` (encode/decode, save/load, hash)
    train.py    `train_codebook`: losses, dead codes, k-means/EMA options, resumable checkpoints
    metrics.py  pure metric functions (recon MSE, mean-macro baseline, perplexity, usage)
    run.py      the stage as a function: prepared data -> artifact, metrics, training curve
"""

from pipeline.codebook.model import Codebook, CodebookSpec, VQVAE, quantize
from pipeline.codebook.train import TrainResult, train_codebook

__all__ = ["Codebook", "CodebookSpec", "VQVAE", "quantize", "TrainResult", "train_codebook"]

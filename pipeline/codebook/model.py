"""The state-conditioned VQ-VAE of MAQ and `Codebook`, its loadable artifact.

    encoder  (obs, macro) -> z_e      MLP S+H·A → hidden → hidden → hidden (ReLU) → D
    quantize z_e -> code, z_q         nearest of K codes (squared Euclidean), straight-through
    decoder  (obs, z_q)   -> macro    MLP S+D → hidden → hidden (ReLU) → H·A, linear output

Observations and actions are standardized inside the model with the train-split statistics,
stored as buffers in `model.safetensors`, so the artifact rebuilds from its own files (a feature
whose train std is below 1e-3 is only centered, so a near-constant feature cannot blow up):
`encode`/`decode` take and return values in env units.

An artifact is a directory: `config.json` (architecture + provenance, `format_version`),
`model.safetensors` (weights and normalizers), `README.md` (model card). `Codebook.hash` is the
sha256 of `model.safetensors`; agents record it and refuse another codebook.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
_STD_FLOOR = 1e-3  # a feature with a smaller train std (near constant) is left unscaled (std 1)


@dataclass(frozen=True)
class CodebookSpec:
    """Everything needed to rebuild the network (written to config.json)."""

    obs_dim: int  # S
    action_dim: int  # A
    H: int
    K: int
    latent_dim: int  # D
    hidden: int


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def quantize(z_e: torch.Tensor, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest code by squared Euclidean distance, with a straight-through gradient.

    z_e (B, D), codes (K, D) -> code (B,) int64, z_q (B, D) = codes[code] in value, z_e in gradient,
    and e_k (B, D) = codes[code] with the codebook's own gradient (for the codebook loss)."""
    distance = (z_e.pow(2).sum(1, keepdim=True) - 2 * z_e @ codes.T + codes.pow(2).sum(1)[None, :])  # (B, K)
    code = distance.argmin(1)  # (B,)
    e_k = codes[code]  # (B, D)
    z_q = z_e + (e_k - z_e).detach()  # straight-through: forward e_k, backward identity to z_e
    return code, z_q, e_k


class VQVAE(nn.Module):
    """The network. Works in standardized units; `Codebook` wraps it with env units and IO."""

    def __init__(self, spec: CodebookSpec):
        super().__init__()
        S, A, H, D, W = spec.obs_dim, spec.action_dim, spec.H, spec.latent_dim, spec.hidden
        self.spec = spec
        self.encoder = _mlp([S + H * A, W, W, W, D])
        self.decoder = _mlp([S + D, W, W, H * A])
        self.codes = nn.Parameter(torch.empty(spec.K, D).uniform_(-1.0 / spec.K, 1.0 / spec.K))  # (K, D)
        self.register_buffer("obs_mean", torch.zeros(S))
        self.register_buffer("obs_std", torch.ones(S))
        self.register_buffer("action_mean", torch.zeros(A))
        self.register_buffer("action_std", torch.ones(A))

    def set_normalizers(self, obs_mean, obs_std, action_mean, action_std) -> None:
        S, A = self.spec.obs_dim, self.spec.action_dim
        for name, value, size in [("obs_mean", obs_mean, S), ("obs_std", obs_std, S), ("action_mean", action_mean, A), ("action_std", action_std, A)]:
            value = torch.as_tensor(np.asarray(value, dtype=np.float32))
            if value.shape != (size,):
                raise ValueError(f"{name} has shape {tuple(value.shape)}, expected ({size},); check meta.json against the task")
            if name.endswith("std"):
                value = torch.where(value > _STD_FLOOR, value, torch.ones_like(value))
            getattr(self, name).copy_(value)

    # -- standardization ---------------------------------------------------------------------
    def norm_obs(self, obs: torch.Tensor) -> torch.Tensor:  # (B, S)
        return (obs - self.obs_mean) / self.obs_std

    def norm_macro(self, macro: torch.Tensor) -> torch.Tensor:  # (B, H, A)
        return (macro - self.action_mean) / self.action_std

    def denorm_macro(self, macro: torch.Tensor) -> torch.Tensor:  # (B, H, A)
        return macro * self.action_std + self.action_mean

    # -- network (standardized units) --------------------------------------------------------
    def encode_latent(self, obs_n: torch.Tensor, macro_n: torch.Tensor) -> torch.Tensor:
        """obs_n (B, S), macro_n (B, H, A) -> z_e (B, D)."""
        return self.encoder(torch.cat([obs_n, macro_n.flatten(1)], dim=1))

    def decode_latent(self, obs_n: torch.Tensor, z_q: torch.Tensor) -> torch.Tensor:
        """obs_n (B, S), z_q (B, D) -> macro_n (B, H, A)."""
        out = self.decoder(torch.cat([obs_n, z_q], dim=1))  # (B, H·A)
        return out.view(-1, self.spec.H, self.spec.action_dim)

    def forward(self, obs_n: torch.Tensor, macro_n: torch.Tensor):
        """Standardized window -> (recon_n (B, H, A), z_e (B, D), e_k (B, D), code (B,))."""
        z_e = self.encode_latent(obs_n, macro_n)  # (B, D)
        code, z_q, e_k = quantize(z_e, self.codes)
        return self.decode_latent(obs_n, z_q), z_e, e_k, code


def _as_tensor(x, dtype, device, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


@dataclass
class Codebook:
    """A trained codebook: `encode(obs, macro) -> code`, `decode(obs, code) -> macro`, in env units.

    Inputs are batched, numpy or torch; outputs have the input's kind (numpy in, numpy out)."""

    model: VQVAE
    info: dict = field(default_factory=dict)  # provenance written to config.json (task, data, training)

    @property
    def spec(self) -> CodebookSpec:
        return self.model.spec

    @property
    def device(self) -> torch.device:
        return self.model.codes.device

    @property
    def H(self) -> int:  # macro length
        return self.spec.H

    @property
    def K(self) -> int:  # number of codes
        return self.spec.K

    # -- API ---------------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, obs, macro):
        """obs (B, S), macro (B, H, A) in env units -> code (B,) int64."""
        S, H, A = self.spec.obs_dim, self.spec.H, self.spec.action_dim
        obs_t = _as_tensor(obs, torch.float32, self.device, "obs")
        macro_t = _as_tensor(macro, torch.float32, self.device, "macro")
        if obs_t.ndim != 2 or obs_t.shape[1] != S or macro_t.shape != (obs_t.shape[0], H, A):
            raise ValueError(f"encode expects obs (B, {S}) and macro (B, {H}, {A}), got {tuple(obs_t.shape)} and {tuple(macro_t.shape)}")
        self.model.eval()
        z_e = self.model.encode_latent(self.model.norm_obs(obs_t), self.model.norm_macro(macro_t))  # (B, D)
        code, _, _ = quantize(z_e, self.model.codes)
        return code if isinstance(obs, torch.Tensor) else code.cpu().numpy()

    @torch.no_grad()
    def decode(self, obs, code):
        """obs (B, S), code (B,) ints < K -> macro (B, H, A) in env units."""
        S, K = self.spec.obs_dim, self.spec.K
        obs_t = _as_tensor(obs, torch.float32, self.device, "obs")
        code_t = _as_tensor(code, torch.int64, self.device, "code")
        if obs_t.ndim != 2 or obs_t.shape[1] != S or code_t.shape != (obs_t.shape[0],):
            raise ValueError(f"decode expects obs (B, {S}) and code (B,), got {tuple(obs_t.shape)} and {tuple(code_t.shape)}")
        if len(code_t) and (code_t.min() < 0 or code_t.max() >= K):
            raise ValueError(f"codes must lie in 0..{K - 1}, got {code_t.min().item()}..{code_t.max().item()}")
        self.model.eval()
        macro_n = self.model.decode_latent(self.model.norm_obs(obs_t), self.model.codes[code_t])  # (B, H, A)
        macro = self.model.denorm_macro(macro_n)
        return macro if isinstance(obs, torch.Tensor) else macro.cpu().numpy()

    @torch.no_grad()
    def reconstruct(self, obs, macro):
        """decode(obs, encode(obs, macro)): (B, S), (B, H, A) -> (B, H, A), same kind as input."""
        return self.decode(obs, self.encode(obs, macro))

    # -- weights and hash --------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in self.model.state_dict().items()}

    def weights_bytes(self) -> bytes:
        """The exact bytes `save_pretrained` writes to model.safetensors."""
        from safetensors.torch import save

        return save(self.state_tensors(), metadata={"format_version": str(FORMAT_VERSION)})

    @property
    def hash(self) -> str:
        """sha256 of model.safetensors: the codebook's identity (agents record it)."""
        return hashlib.sha256(self.weights_bytes()).hexdigest()

    def config_dict(self) -> dict:
        return {"format_version": FORMAT_VERSION, "kind": "codebook", "model_type": "maq-vqvae", **asdict(self.spec), **self.info}

    # -- IO ----------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, card: str | None = None) -> str:
        """Write config.json, model.safetensors and README.md (if `card`) atomically; return the hash."""
        from pipeline.io import atomic_path, write_json_atomic, write_text_atomic

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = self.weights_bytes()
        digest = hashlib.sha256(data).hexdigest()
        with atomic_path(directory / WEIGHTS_FILE) as tmp:
            tmp.write_bytes(data)
        write_json_atomic(directory / CONFIG_FILE, {**self.config_dict(), "weights_sha256": digest})
        if card is not None:
            write_text_atomic(directory / CARD_FILE, card)
        return digest

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu", *, revision: str | None = None,
                        cache_dir: str | Path | None = None) -> "Codebook":
        """Load a codebook written by `save_pretrained`: a local directory, or a Hub repo id
        (`"namespace/name"`, at `revision`, default main; also `"namespace/name@rev"`), downloaded through
        the Hugging Face cache (pipeline.hub). A local path that exists always wins over a repo id."""
        from safetensors.torch import load

        from pipeline.hub import resolve_artifact_dir
        from pipeline.io import sha256_file

        directory, hub_ref = resolve_artifact_dir(path, revision, cache_dir=cache_dir)
        config_path, weights_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
        config_name, weights_name = (f"{hub_ref} {CONFIG_FILE}", f"{hub_ref} {WEIGHTS_FILE}") if hub_ref else (config_path, weights_path)
        if hub_ref is not None:
            redo = f"the Hub repo {hub_ref} holds a broken codebook: push a fresh one (`maq hub push models/codebooks/<task> <repo>`) or pin another revision"
        else:
            redo = "re-run the codebook stage (`dvc repro codebook`) or download the codebook again"
        if not config_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(f"{hub_ref or directory} is not a codebook: it needs {CONFIG_FILE} and {WEIGHTS_FILE}; {redo}")
        try:
            config = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{config_name} is not valid JSON ({exc}); {redo}") from exc
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{config_name} has format_version {config.get('format_version')!r}, this code reads {FORMAT_VERSION}; {redo}")
        try:
            spec = CodebookSpec(**{k: int(config[k]) for k in CodebookSpec.__dataclass_fields__})
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{config_name} lacks a valid architecture field ({exc}); {redo}") from exc
        try:
            tensors = load(weights_path.read_bytes())
        except Exception as exc:  # SafetensorError and others: truncated or corrupt file
            raise ValueError(f"{weights_name} is not a readable safetensors file ({exc}); it may be truncated: {redo}") from exc
        expected_hash = config.get("weights_sha256")
        if expected_hash is not None and sha256_file(weights_path) != expected_hash:
            raise ValueError(f"{weights_name} does not match the weights_sha256 in {config_name}: the two files come from different runs or the weights were altered; {redo}")
        model = VQVAE(spec)
        wanted = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in tensors.items()}
        if wanted != found:
            diff = sorted(k for k in set(wanted) | set(found) if wanted.get(k) != found.get(k))
            raise ValueError(
                f"{weights_name} does not fit {config_name} (tensor {diff[0]}: config says {wanted.get(diff[0])}, "
                f"weights have {found.get(diff[0])}); the two files come from different runs: {redo}"
            )
        model.load_state_dict(tensors)
        info = {k: v for k, v in config.items() if k not in CodebookSpec.__dataclass_fields__ and k not in ("format_version", "kind", "model_type", "weights_sha256")}
        return cls(model=model.to(device).eval(), info=info)

"""The VQ-VAE codebook: quantizer, API shapes, save/load, errors, dead codes, training, resuming."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipeline.benchmarks.codebook import make_smooth_episodes, write_prepared  # noqa: E402
from pipeline.codebook import Codebook, CodebookSpec, VQVAE, quantize, train_codebook  # noqa: E402
from pipeline.codebook.metrics import mean_macro_baseline_mse, perplexity  # noqa: E402
from pipeline.codebook.run import evaluate_codebook, run_codebook  # noqa: E402
from pipeline.codebook.train import CHECKPOINT_FILE, reinit_dead_codes  # noqa: E402
from pipeline.config import CodebookConfig, load_params  # noqa: E402
from pipeline.data.windows import make_windows  # noqa: E402
from pipeline.io import sha256_file  # noqa: E402
from pipeline.live import read_curve  # noqa: E402
from tests.test_live import tree_bytes  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
S, A, H = 10, 4, 4


def small_cfg(**overrides) -> CodebookConfig:
    """The repo's codebook params, shrunk so that a training run takes about a second."""
    cfg = load_params(REPO / "params.yaml").codebook
    small = dict(H=H, K=8, latent_dim=16, hidden=64, epochs=12, batch_size=32, lr=1e-3, threads=1, device="cpu")
    return replace(cfg, **{**small, **overrides})


@pytest.fixture(scope="module")
def data():
    episodes = make_smooth_episodes(10, 60, S, A, seed=3, n_moves=4)
    train_eps, test_eps = episodes.select(np.arange(8)), episodes.select([8, 9])
    stats = {
        "obs_mean": train_eps.obs.mean(0), "obs_std": train_eps.obs.std(0),
        "action_mean": train_eps.actions.mean(0), "action_std": train_eps.actions.std(0),
    }
    return make_windows(train_eps, H), make_windows(test_eps, H), stats


def random_codebook(K=8, D=16, seed=0) -> Codebook:
    torch.manual_seed(seed)
    model = VQVAE(CodebookSpec(obs_dim=S, action_dim=A, H=H, K=K, latent_dim=D, hidden=32))
    model.set_normalizers(np.arange(S) * 0.1, np.full(S, 2.0), np.full(A, 0.5), np.full(A, 0.3))
    return Codebook(model=model, info={"task": "test"})


def test_params_yaml_has_a_valid_codebook_section():
    cfg = load_params(REPO / "params.yaml").codebook
    assert (cfg.H, cfg.K, cfg.latent_dim, cfg.hidden, cfg.beta, cfg.batch_size) == (9, 16, 256, 256, 0.25, 32)


def test_quantizer_picks_nearest_code_and_passes_gradient_straight_through():
    generator = torch.Generator().manual_seed(0)
    codes = torch.randn(8, 5, generator=generator)
    z_e = torch.randn(50, 5, generator=generator, requires_grad=True)
    code, z_q, e_k = quantize(z_e, codes)
    brute = torch.stack([((codes - z).pow(2).sum(1)).argmin() for z in z_e.detach()])
    assert torch.equal(code, brute)
    assert torch.allclose(z_q, codes[code], atol=1e-6) and torch.equal(e_k, codes[code])
    weights = torch.randn(50, 5, generator=generator)
    (z_q * weights).sum().backward()
    assert torch.equal(z_e.grad, weights)  # d z_q / d z_e = identity


def test_encode_decode_shapes_and_kinds():
    codebook = random_codebook()
    obs, macro = np.random.default_rng(0).normal(size=(5, S)), np.random.default_rng(1).normal(size=(5, H, A))
    code = codebook.encode(obs, macro)
    assert isinstance(code, np.ndarray) and code.shape == (5,) and code.dtype == np.int64 and code.max() < 8
    out = codebook.decode(obs, code)
    assert isinstance(out, np.ndarray) and out.shape == (5, H, A) and out.dtype == np.float32
    out_t = codebook.decode(torch.as_tensor(obs, dtype=torch.float32), torch.as_tensor(code))
    assert isinstance(out_t, torch.Tensor) and np.allclose(out_t.numpy(), out)
    with pytest.raises(ValueError, match=r"macro \(B, 4, 4\)"):
        codebook.encode(obs, macro[:, :2])
    with pytest.raises(ValueError, match="codes must lie in 0..7"):
        codebook.decode(obs, np.full(5, 8))


def test_decode_is_in_action_units():
    """The normalizer buffers are applied: decode = decoder output * action_std + action_mean."""
    codebook = random_codebook()
    obs, code = np.zeros((3, S), np.float32), np.array([0, 1, 2])
    model = codebook.model
    with torch.no_grad():
        raw = model.decode_latent(model.norm_obs(torch.as_tensor(obs)), model.codes[torch.as_tensor(code)])
    np.testing.assert_allclose(codebook.decode(obs, code), raw.numpy() * 0.3 + 0.5, rtol=1e-6)


def test_save_load_is_bit_exact(tmp_path):
    codebook = random_codebook()
    digest = codebook.save_pretrained(tmp_path, card="---\ntask: test\n---\n")
    loaded = Codebook.from_pretrained(tmp_path)
    for key, value in codebook.model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key
    obs = np.random.default_rng(2).normal(size=(7, S))
    code = np.arange(7) % 8
    assert np.array_equal(codebook.decode(obs, code), loaded.decode(obs, code))
    assert digest == codebook.hash == loaded.hash == sha256_file(tmp_path / "model.safetensors")
    assert json.loads((tmp_path / "config.json").read_text())["format_version"] == 1
    assert loaded.info["task"] == "test"


def test_truncated_weights_give_a_clear_error(tmp_path):
    random_codebook().save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"model\.safetensors.*truncated.*re-run the codebook stage"):
        Codebook.from_pretrained(tmp_path)


def test_config_weights_mismatch_gives_a_clear_error(tmp_path):
    random_codebook(K=8).save_pretrained(tmp_path)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, "K": 16}))  # config from another run
    with pytest.raises(ValueError, match=r"model\.safetensors does not fit .*config\.json.*codes.*re-run"):
        Codebook.from_pretrained(tmp_path)
    other = tmp_path / "other"
    random_codebook(K=8, seed=1).save_pretrained(other)
    config_path.write_text(json.dumps(config))
    shutil.copy(other / "model.safetensors", tmp_path / "model.safetensors")  # same shapes, other weights
    with pytest.raises(ValueError, match=r"model\.safetensors does not match the weights_sha256"):
        Codebook.from_pretrained(tmp_path)


def test_dead_code_reinit_makes_no_duplicates():
    """Regression: the official code copies z_e exactly into dead codes, so codes can coincide."""
    codes = torch.randn(8, 6, generator=torch.Generator().manual_seed(0))
    dead = torch.tensor([True, False, True, True, False, True, True, False])
    z_e = torch.randn(1, 6).repeat(20, 1)  # every window has the same encoding
    z_e[10:] += 1.0
    new = reinit_dead_codes(codes, dead, z_e, noise=0.01, generator=torch.Generator().manual_seed(1))
    assert torch.equal(new[~dead], codes[~dead])  # live codes untouched
    assert len(torch.unique(new, dim=0)) == 8
    for row in new[dead]:
        assert not (z_e == row).all(1).any()  # never an exact copy of an encoder output
        assert (z_e - row).norm(dim=1).min() < 0.1  # but close to a real one


def test_training_beats_the_mean_macro_baseline_and_uses_codes(data):
    train, test, stats = data
    result = train_codebook(train, small_cfg(), stats, test=test, progress=False)
    metrics = evaluate_codebook(result.codebook, train, test)
    assert result.completed and len(result.history) == 12
    assert metrics["test_baseline_mse"] == pytest.approx(mean_macro_baseline_mse(train.macro, test.macro))
    assert metrics["test_mse"] < 0.5 * metrics["test_baseline_mse"]
    assert result.history[-1]["recon_loss"] < result.history[0]["recon_loss"]
    assert metrics["train_used_codes"] >= 6 and metrics["train_perplexity"] > 3
    assert perplexity(np.array(metrics["train_code_counts"])) == pytest.approx(metrics["train_perplexity"])


@pytest.mark.parametrize("options", [{}, {"ema": True, "kmeans_init": False, "lr_schedule": "paper", "lr_step_epochs": 2}])
def test_resume_after_interrupt_gives_identical_weights(data, tmp_path, options):
    train, test, stats = data
    cfg = small_cfg(epochs=7, **options)
    ckpt, full_curve, curve = tmp_path / "ckpt", tmp_path / "curve-full", tmp_path / "curve"
    full = train_codebook(train, cfg, stats, test=test, curve_dir=full_curve, progress=False)
    stopped = train_codebook(train, cfg, stats, test=test, checkpoint_dir=ckpt, checkpoint_every=2, curve_dir=curve, stop_after=5,
                             progress=False)
    assert not stopped.completed and (ckpt / CHECKPOINT_FILE).is_file()
    assert [row["epoch"] for row in read_curve(curve, "epoch")] == [1, 2, 3, 4, 5]  # logged live, past the checkpoint
    # as if killed after epoch 5: the last checkpoint holds epoch 4, epoch 5 is redone
    resumed = train_codebook(train, cfg, stats, test=test, checkpoint_dir=ckpt, checkpoint_every=2, curve_dir=curve, progress=False)
    assert resumed.resumed_from == 4 and resumed.completed
    for key, value in full.codebook.model.state_dict().items():
        assert torch.equal(value, resumed.codebook.model.state_dict()[key]), key
    assert full.history == resumed.history
    assert full.codebook.hash == resumed.codebook.hash
    assert tree_bytes(curve) == tree_bytes(full_curve)  # the checkpointed rows were logged again, epoch 5 once
    assert read_curve(curve, "epoch") == [{k: float(v) if k != "epoch" else v for k, v in row.items()} for row in full.history]


def test_checkpoint_of_other_params_is_ignored(data, tmp_path):
    train, _, stats = data
    train_codebook(train, small_cfg(epochs=5), stats, checkpoint_dir=tmp_path, checkpoint_every=2, stop_after=3, progress=False)
    other = train_codebook(train, small_cfg(epochs=5, lr=5e-4), stats, checkpoint_dir=tmp_path, checkpoint_every=2, progress=False)
    assert other.resumed_from == 0 and other.completed


def test_run_codebook_writes_the_stage_outputs(tmp_path):
    episodes = make_smooth_episodes(6, 40, S, A, seed=5, n_moves=3)
    prepared = write_prepared(tmp_path / "prepared", "door", episodes, n_test=1)
    out, metrics_path, curve_dir, checkpoint_dir = tmp_path / "cb", tmp_path / "m.json", tmp_path / "curve", tmp_path / "ckpt"
    result, metrics = run_codebook("door", small_cfg(epochs=3), prepared, out, metrics_path, curve_dir, checkpoint_dir, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "mean-macro baseline" in card and "never cross episode" in card
    from huggingface_hub import ModelCard

    parsed = ModelCard.load(out / "README.md", ignore_metadata_errors=False)  # the Hub's reader; model-index holds the metrics
    assert {r.metric_type: r.metric_value for r in parsed.data.eval_results}["test_mse"] == pytest.approx(metrics["test_mse"])
    assert parsed.data.library_name == "maq-hub" and parsed.data.weights_sha256 == metrics["codebook_sha256"]
    written = json.loads(metrics_path.read_text())
    assert written["codebook_sha256"] == sha256_file(out / "model.safetensors") == Codebook.from_pretrained(out).hash
    assert all(not isinstance(v, list) for v in written.values())
    assert [row["epoch"] for row in read_curve(curve_dir, "epoch")] == [1, 2, 3]
    assert not checkpoint_dir.exists()
    with pytest.raises(ValueError, match="not 'relocate'"):
        run_codebook("relocate", small_cfg(epochs=1), prepared, out, metrics_path, curve_dir, checkpoint_dir, progress=False)


KILLABLE_RUN = """
import sys
from pathlib import Path
from tests.test_codebook import small_cfg
from pipeline.codebook.run import run_codebook
root, out = Path(sys.argv[1]), Path(sys.argv[2])
run_codebook("door", small_cfg(epochs=40), root / "prepared", out / "codebook", out / "metrics.json", out / "curve", out / "ckpt",
             checkpoint_every=5, progress=False)
"""


def test_a_run_killed_with_sigkill_resumes_to_the_same_files(tmp_path):
    write_prepared(tmp_path / "prepared", "door", make_smooth_episodes(6, 40, S, A, seed=5, n_moves=3), n_test=1)
    command = [sys.executable, "-c", KILLABLE_RUN, str(tmp_path)]
    subprocess.run([*command, str(tmp_path / "straight")], cwd=REPO, check=True)
    killed = tmp_path / "killed"
    run = subprocess.Popen([*command, str(killed)], cwd=REPO)
    logged = killed / "curve" / "plots" / "metrics" / "test_mse.tsv"

    def epochs_logged() -> int:
        return len(logged.read_text().splitlines()) - 1 if logged.exists() else 0

    while run.poll() is None and not ((killed / "ckpt" / CHECKPOINT_FILE).exists() and epochs_logged() % 5):
        time.sleep(0.002)  # killed between checkpoints: epochs past the last one are logged, and must not stay twice
    run.send_signal(signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL and not (killed / "codebook").exists(), "the run ended before it could be killed"
    subprocess.run([*command, str(killed)], cwd=REPO, check=True)  # resumes from the checkpoint
    for name in ("codebook", "metrics.json", "curve"):
        path = tmp_path / "straight" / name
        assert (tree_bytes(path) == tree_bytes(killed / name)) if path.is_dir() else path.read_bytes() == (killed / name).read_bytes(), name

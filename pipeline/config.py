"""Typed params: `params.yaml` read once into frozen dataclasses, one per section.

`params.yaml` is the only source of hyperparameter values. Each section is a frozen dataclass
below; every field is documented once, here. Loading is strict: an unknown key, a missing key or
a value of the wrong type raises `ParamsError` naming the key.

Functions take their own section (`prepare_task(task, params.prepare, …)`), never the whole tree.

To add a section: write a `Section` dataclass and add it as a field of `Params`.

Reads of params fields can be recorded (`record_param_reads`), which is how a test checks that
each stage's `params:` list in dvc.yaml covers everything its code reads.
"""

from __future__ import annotations

import types
import typing
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Iterator

import yaml

PARAMS_FILE = Path("params.yaml")

_reads: set[str] | None = None  # dotted keys read while recording, else None


class ParamsError(ValueError):
    """params.yaml is malformed: the message names the key and says what is expected."""


class Section:
    """Base of every params section: records reads of its fields while recording is on."""

    _key: str = ""  # dotted path of this section in params.yaml, set by the loader

    def __getattribute__(self, name: str):
        value = object.__getattribute__(self, name)
        if _reads is not None and not name.startswith("_") and name in object.__getattribute__(self, "__dataclass_fields__"):
            if not isinstance(value, Section):  # record leaves; a section records its own fields
                key = object.__getattribute__(self, "_key")
                _reads.add(f"{key}.{name}" if key else name)
        return value


@contextmanager
def record_param_reads() -> Iterator[set[str]]:
    """Collect the dotted keys (e.g. `prepare.split_seed`) of every params field read inside."""
    global _reads
    previous, _reads = _reads, set()
    try:
        yield _reads
    finally:
        _reads = previous


# -- sections --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sources(Section):
    """Where each task's demonstrations come from. One of:
    `synthetic` (this project's demonstrator, the offline default),
    `minari:<dataset id>` (a Minari dataset in the local store, `MINARI_DATASETS_PATH`),
    `pkl:<path>` (the official MAQ pickle format, path relative to the repo root)."""

    door: str
    hammer: str
    pen: str
    relocate: str


@dataclass(frozen=True)
class DemosConfig(Section):
    """The synthetic demonstrator (`demos` stage)."""

    episodes: int  # successful demonstrations to keep per task
    seed: int  # base seed; attempt i uses seed + i


@dataclass(frozen=True)
class PrepareConfig(Section):
    """Loading, validating and splitting demonstrations (`prepare` stage)."""

    test_fraction: float  # share of whole episodes held out as the human test reference
    split_seed: int  # seed of the episode shuffle before the split
    allow_download: bool  # may a missing Minari dataset be downloaded (needs network)


@dataclass(frozen=True)
class CodebookConfig(Section):
    """The state-conditioned VQ-VAE that distills demonstrations into K macro actions of H steps
    (`codebook` stage). Paper values: H=9, K=16, D=256, hidden 256, Adam 3e-4, batch 32, β=0.25."""

    H: int  # macro length: actions per window (paper: 9 for MAQ+RLPD/IQL, 8 for MAQ+DSAC)
    K: int  # codebook size: number of macro actions (paper: 16; 8 for MAQ+DSAC)
    latent_dim: int  # D, size of z_e, z_q and of each code (paper: 256)
    hidden: int  # width of the encoder and decoder MLP layers (paper: 256)
    beta: float  # commitment weight β on MSE(z_e, sg[e_k]) (paper: 0.25)
    lr: float  # Adam learning rate (paper: 3e-4)
    lr_schedule: str  # "constant", or "paper": lr / (n + 1) during the n-th block of lr_step_epochs
    lr_step_epochs: int  # epochs per block of the "paper" schedule (paper: 20)
    batch_size: int  # windows per gradient step (paper: 32)
    epochs: int  # passes over the train windows (paper: 100)
    seed: int  # seeds weight init, k-means, the per-epoch shuffle and dead-code re-initialisation
    kmeans_init: bool  # initialise the codes by k-means on the initial encoder's train outputs
    kmeans_iters: int  # Lloyd iterations of that k-means
    ema: bool  # update codes by exponential moving averages instead of the codebook loss
    ema_decay: float  # decay of those averages (used only when ema is true)
    dead_code_min_usage: int  # after each epoch but the last, a code chosen by fewer train windows is re-initialised
    dead_code_noise: float  # noise added to a re-initialised code, as a fraction of z_e's per-dim std
    checkpoint_every: int  # epochs between resumable checkpoints (0: never)
    threads: int  # torch CPU threads (1 beside other jobs; 0 leaves torch's default)
    device: str  # "auto" (cuda when available, else cpu), "cpu" or "cuda"
    source: str  # "train" (this stage trains it), or "hub:<repo>@<revision>" (pull a pretrained codebook)


@dataclass(frozen=True)
class Methods(Section):
    """The methods the DAG trains on every task (names of pipeline.methods.METHODS), in two groups
    because they depend on different things: a codebook change retrains only the MAQ methods."""

    baselines: tuple[str, ...]  # act in the env's continuous actions: sac, rlpd, iql
    maq: tuple[str, ...]  # act in codes of the task's codebook: maq_rlpd, maq_iql, maq_dsac

    @property
    def all(self) -> tuple[str, ...]:
        return self.baselines + self.maq


@dataclass(frozen=True)
class FinetuneConfig(Section):
    """Training every agent (`finetune` stage: one process per task × method trains all `seeds` as one
    population). Budgets are in env
    steps for every method (a macro step counts the h ≤ H env steps it executed), so methods get
    the same interaction budget. Paper budget: 1e6 env steps, 1e6 offline updates."""

    env_steps: int  # online env steps per run
    offline_updates: int  # updates on the demonstrations alone before going online (iql, maq_iql)
    eval_every: int  # env steps between learning-curve evaluations (and one at the end)
    eval_episodes: int  # deterministic episodes per learning-curve point
    checkpoint_every: int  # env steps between resumable checkpoints (0: never)
    threads: int  # torch CPU threads of the population's updates (0 leaves torch's default)
    device: str  # "auto", "cpu" or "cuda"


@dataclass(frozen=True)
class AgentOverrides(Section):
    """Per-method changes to the backend config defaults (pipeline/methods.py *_CONFIG), as a mapping of
    config key -> value, e.g. `rlpd: {utd: 20}`. Unknown keys fail when the run starts. The special
    key `preset` starts from a named preset of pipeline.methods.PRESETS (e.g. maq_rlpd_official)."""

    sac: dict
    rlpd: dict
    iql: dict
    maq_rlpd: dict
    maq_iql: dict
    maq_dsac: dict


@dataclass(frozen=True)
class EvaluateConfig(Section):
    """Evaluating every trained agent (`evaluate` stage) and the similarity anchors (`references`)."""

    episodes: int  # deterministic episodes per agent; episode i of seed s uses env seed 200·s + i (paper: 100)
    reference_episodes: int  # random-agent episodes (seeds 200·0 + i) anchoring the similarity scores at 0
    dtw: str  # "exact" (C DTW), or "fastdtw" (the official code's approximate numbers, radius 1)


@dataclass(frozen=True)
class ReportConfig(Section):
    """Aggregating seeds into tables, plots and videos (`report` stage)."""

    bootstrap_reps: int  # stratified bootstrap resamples for the confidence intervals (rliable)
    confidence: float  # CI level, e.g. 0.95
    videos: bool  # render evaluation episodes to video (MUJOCO_GL=egl)
    video_episodes: int  # episodes rendered per task × method (first seed)
    video_size: int  # frame width and height in pixels


@dataclass(frozen=True)
class HubConfig(Section):
    """Publishing to the Hugging Face Hub (`publish` stage). Off by default: nothing is pushed
    unless `push` is true; the token comes from HF_TOKEN or `hf auth login`, never from here."""

    push: bool  # push codebooks and agents (opt-in)
    namespace: str  # user or organisation the repos are created under
    private: bool  # create the repos private


@dataclass(frozen=True)
class Params(Section):
    tasks: tuple[str, ...]  # tasks the DAG runs (keys of pipeline.tasks.TASKS)
    sources: Sources
    demos: DemosConfig
    prepare: PrepareConfig
    codebook: CodebookConfig
    methods: Methods
    seeds: tuple[int, ...]  # training seeds of every task × method (paper: 1, 10, 100)
    finetune: FinetuneConfig
    agents: AgentOverrides
    evaluate: EvaluateConfig
    report: ReportConfig
    hub: HubConfig


# -- loading ---------------------------------------------------------------------------------
def _check_value(key: str, value, expected) -> object:
    """Return `value` converted to the declared type, or raise ParamsError naming `key`."""
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(expected)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _check_value(key, value, option)
            except ParamsError as exc:
                errors.append(str(exc))
        raise ParamsError(errors[0])
    if origin is tuple:
        (item_type, _) = typing.get_args(expected)
        if not isinstance(value, list):
            raise ParamsError(f"params key '{key}' must be a list, got {value!r}")
        return tuple(_check_value(f"{key}[{i}]", v, item_type) for i, v in enumerate(value))
    if isinstance(expected, type) and issubclass(expected, Section):
        return _build_section(key, value, expected)
    if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if expected is dict and isinstance(value, dict):
        return dict(value)
    if expected is dict and value is None:  # an empty YAML mapping written as `key:`
        return {}
    if expected in (bool, str) and isinstance(value, expected):
        return value
    raise ParamsError(f"params key '{key}' must be {getattr(expected, '__name__', expected)}, got {value!r}")


def _build_section(key: str, raw, cls):
    if not isinstance(raw, dict):
        raise ParamsError(f"params key '{key or '<top level>'}' must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        where = f"'{key}.{unknown[0]}'" if key else f"'{unknown[0]}'"
        raise ParamsError(f"unknown params key {where}; known keys here: {', '.join(names)}")
    missing = [n for n in names if n not in raw]
    if missing:
        where = f"{key}.{missing[0]}" if key else missing[0]
        raise ParamsError(f"missing params key '{where}' (see params.yaml and pipeline/config.py)")
    values = {n: _check_value(f"{key}.{n}" if key else n, raw[n], hints[n]) for n in names}
    section = cls(**values)
    if isinstance(section, Section):
        object.__setattr__(section, "_key", key)
    return section


def parse_params(raw: dict) -> Params:
    """Build `Params` from an already-parsed YAML mapping (strict, see module docstring)."""
    params = _build_section("", raw, Params)
    from pipeline.tasks import TASKS

    for name in object.__getattribute__(params, "tasks"):  # not a stage's read: not recorded
        if name not in TASKS:
            raise ParamsError(f"params key 'tasks' names unknown task {name!r}; known: {', '.join(TASKS)}")
    from pipeline.methods import dag_methods

    methods = object.__getattribute__(params, "methods")
    for group in ("baselines", "maq"):
        fits = dag_methods(group)
        for name in object.__getattribute__(methods, group):
            if name not in fits:
                raise ParamsError(f"params key 'methods.{group}' names {name!r}, which is not one of {', '.join(fits)}")
    return params


def load_params(path: str | Path = PARAMS_FILE) -> Params:
    """Read and validate `params.yaml` (from the current directory by default)."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"no params file at {path.resolve()}; run from the repository root")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path} is not valid YAML: {exc}") from exc
    return parse_params(raw or {})


def section_to_dict(section) -> dict:
    """A section as a plain dict (for config.json files and cards)."""
    assert is_dataclass(section)
    out = {}
    for f in fields(section):
        value = object.__getattribute__(section, f.name)
        out[f.name] = section_to_dict(value) if is_dataclass(value) else (list(value) if isinstance(value, tuple) else value)
    return out

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

import math
import types
import typing
from typing import ClassVar
from contextlib import contextmanager
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Iterator

import yaml

from pipeline.entry import UserError

PARAMS_FILE = Path("params.yaml")

_reads: set[str] | None = None  # dotted keys read while recording, else None


class ParamsError(UserError, ValueError):
    """params.yaml is malformed: the message names the key and says what is expected."""


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric field: `low ≤ x ≤ high` (`<` where the bound is open)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def __contains__(self, x) -> bool:
        if self.low is not None and (x <= self.low if self.low_open else x < self.low):
            return False
        return not (self.high is not None and (x >= self.high if self.high_open else x > self.high))

    def __str__(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return f"{'(' if self.low_open or self.low is None else '['}{lo}, {hi}{')' if self.high_open or self.high is None else ']'}"


def at_least(n: float) -> Range:
    return Range(low=n)


POSITIVE = Range(low=0, low_open=True)  # > 0
FRACTION = Range(0, 1, low_open=True, high_open=True)  # (0, 1)
UNIT = Range(0, 1)  # [0, 1]
DEVICES = ("auto", "cpu", "cuda")


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

    ranges: ClassVar[dict] = {"episodes": at_least(1), "seed": at_least(0)}


@dataclass(frozen=True)
class PrepareConfig(Section):
    """Loading, validating and splitting demonstrations (`prepare` stage)."""

    test_fraction: float  # share of whole episodes held out as the human test reference
    split_seed: int  # seed of the episode shuffle before the split
    allow_download: bool  # may a missing Minari dataset be downloaded (needs network)

    ranges: ClassVar[dict] = {"test_fraction": FRACTION, "split_seed": at_least(0)}


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
    threads: int  # torch CPU threads (1 beside other jobs; 0 leaves torch's default); part of the result: see RuntimeConfig
    device: str  # "auto" (cuda when available, else cpu), "cpu" or "cuda"
    source: str  # "train" (this stage trains it), or "hub:<repo>@<revision>" (pull a pretrained codebook)

    ranges: ClassVar[dict] = {
        "H": at_least(1), "K": at_least(2), "latent_dim": at_least(1), "hidden": at_least(1), "beta": at_least(0),
        "lr": POSITIVE, "lr_schedule": ("constant", "paper"), "lr_step_epochs": at_least(1), "batch_size": at_least(1),
        "epochs": at_least(1), "seed": at_least(0), "kmeans_iters": at_least(0), "ema_decay": Range(0, 1, high_open=True),
        "dead_code_min_usage": at_least(0), "dead_code_noise": at_least(0),
        "threads": at_least(0), "device": DEVICES,
    }


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
class MacroConfig(Section):
    """How agents acting in codes execute a code (`finetune` of the MAQ methods; evaluation uses
    what the agent was trained with, recorded in its config.json)."""

    execute_steps: int | None  # decoded actions executed per code before the next choice: null = H, open loop (the
    # paper); n < H is receding-horizon execution (demonstration transitions then span n steps too)

    ranges: ClassVar[dict] = {"execute_steps": at_least(1)}


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
    threads: int  # torch CPU threads of the population's updates (0 leaves torch's default); part of the result
    device: str  # "auto", "cpu" or "cuda"
    tf32: bool  # CUDA: TF32 matmuls (faster, ~1e-3 relative error per matmul); part of the result on CUDA
    cuda_graphs: bool  # CUDA: replay each update round and acting call as a captured CUDA graph (same results)

    ranges: ClassVar[dict] = {
        "env_steps": at_least(0), "offline_updates": at_least(0), "eval_every": at_least(0), "eval_episodes": at_least(1),
        "threads": at_least(0), "device": DEVICES,
    }


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
    protocol: str  # "paper" (seeded episodes vs all human test episodes), "paired" (from each human test episode's start state), "both"
    discriminator_window: int  # steps per (s, a) window the human-vs-agent discriminator sees (non-overlapping)
    bootstrap_reps: int  # resamples of episodes for the discriminator AUC's confidence interval

    ranges: ClassVar[dict] = {"episodes": at_least(1), "reference_episodes": at_least(1), "dtw": ("exact", "fastdtw"),
                              "protocol": ("paper", "paired", "both"), "discriminator_window": at_least(1),
                              "bootstrap_reps": at_least(1)}


@dataclass(frozen=True)
class ReportConfig(Section):
    """Aggregating seeds into tables, plots and videos (`report` stage)."""

    bootstrap_reps: int  # stratified bootstrap resamples for the confidence intervals (rliable)
    confidence: float  # CI level, e.g. 0.95
    videos: bool  # render evaluation episodes to video (MUJOCO_GL=egl)
    video_episodes: int  # episodes rendered per task × method (first seed)
    video_size: int  # frame width and height in pixels

    ranges: ClassVar[dict] = {"bootstrap_reps": at_least(1), "confidence": FRACTION, "video_episodes": at_least(0),
                              "video_size": at_least(16)}


@dataclass(frozen=True)
class HubConfig(Section):
    """Publishing to the Hugging Face Hub (`publish` stage). Off by default: nothing is pushed
    unless `push` is true; the token comes from HF_TOKEN or `hf auth login`, never from here."""

    push: bool  # push codebooks and agents (opt-in)
    namespace: str  # user or organisation the repos are created under
    private: bool  # create the repos private


@dataclass(frozen=True)
class RuntimeConfig(Section):
    """How the stages run, not what they compute. No stage of dvc.yaml lists these keys, so changing one re-runs
    nothing: a run resumed from any checkpoint ends with the outputs of an uninterrupted one (tests/test_codebook.py,
    tests/test_finetune.py). Thread counts and devices are not here: they change the order of parallel sums (a
    codebook trained on 1 and on 2 threads differs in its weights' bits), so they stay stage params."""

    codebook_checkpoint_every: int  # codebook epochs between resumable checkpoints (0: never)
    finetune_checkpoint_every: int  # offline updates / env steps between finetune checkpoints (0: never)
    sweep_point_cpus: float  # CPUs each point of `maq sweep run --engine ray` asks Ray for (--num-cpus overrides)
    sweep_point_gpus: float  # GPUs each point asks Ray for (--num-gpus overrides); fractions share a GPU

    ranges: ClassVar[dict] = {"codebook_checkpoint_every": at_least(0), "finetune_checkpoint_every": at_least(0),
                              "sweep_point_cpus": at_least(0), "sweep_point_gpus": at_least(0)}


@dataclass(frozen=True)
class Params(Section):
    tasks: tuple[str, ...]  # tasks the DAG runs (keys of pipeline.tasks.TASKS)
    sources: Sources
    demos: DemosConfig
    prepare: PrepareConfig
    codebook: CodebookConfig
    methods: Methods
    seeds: tuple[int, ...]  # training seeds of every task × method (paper: 1, 10, 100)
    macro: MacroConfig
    finetune: FinetuneConfig
    agents: AgentOverrides
    evaluate: EvaluateConfig
    report: ReportConfig
    hub: HubConfig
    runtime: RuntimeConfig


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
        if not math.isfinite(value):
            raise ParamsError(f"params key '{key}' must be a finite number, got {value!r}")
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
    for name, valid in getattr(cls, "ranges", {}).items():
        where = f"{key}.{name}" if key else name
        if isinstance(valid, Range) and values[name] is not None and values[name] not in valid:
            raise ParamsError(f"params key '{where}' is {values[name]!r}, outside its valid range {valid}")
        if isinstance(valid, tuple) and values[name] not in valid:
            raise ParamsError(f"params key '{where}' is {values[name]!r}; valid values: {', '.join(valid)}")
    section = cls(**values)
    if isinstance(section, Section):
        object.__setattr__(section, "_key", key)
    return section


def parse_params(raw: dict) -> Params:
    """Build `Params` from an already-parsed YAML mapping (strict, see module docstring)."""
    params = _build_section("", raw, Params)
    get = object.__getattribute__  # checks across sections are not a stage's reads: not recorded
    from pipeline.tasks import TASKS

    tasks = get(params, "tasks")
    for name in tasks:
        if name not in TASKS:
            raise ParamsError(f"params key 'tasks' names unknown task {name!r}; known: {', '.join(TASKS)}")
    if len(set(tasks)) != len(tasks):
        raise ParamsError(f"params key 'tasks' lists a task twice: {list(tasks)}")
    for task in TASKS:
        spec = get(get(params, "sources"), task)
        kind, _, ref = spec.partition(":")
        if not (spec == "synthetic" or (kind in ("minari", "pkl") and ref)):
            raise ParamsError(f"params key 'sources.{task}' is {spec!r}; use 'synthetic', 'minari:<dataset id>' or 'pkl:<path>'")
    seeds = get(params, "seeds")
    if not seeds or any(seed < 0 for seed in seeds) or len(set(seeds)) != len(seeds):
        raise ParamsError(f"params key 'seeds' must list distinct seeds ≥ 0, at least one; got {list(seeds)}")
    source = get(get(params, "codebook"), "source")
    if source != "train" and not (source.startswith("hub:") and len(source) > 4):
        raise ParamsError(f"params key 'codebook.source' is {source!r}; use 'train' or 'hub:<repo>@<revision>'")
    execute_steps, H = get(get(params, "macro"), "execute_steps"), get(get(params, "codebook"), "H")
    if execute_steps is not None and execute_steps > H and source == "train":  # a pulled codebook's H is checked by finetune
        raise ParamsError(f"params key 'macro.execute_steps' is {execute_steps}, more than the {H} actions a code decodes "
                          f"to (codebook.H); choose 1 ≤ execute_steps ≤ {H}, or null for H")
    from pipeline.methods import check_overrides, dag_methods

    methods = get(params, "methods")
    for group in ("baselines", "maq"):
        fits = dag_methods(group)
        for name in get(methods, group):
            if name not in fits:
                raise ParamsError(f"params key 'methods.{group}' names {name!r}, which is not one of {', '.join(fits)}")
    for name in dag_methods():
        try:
            check_overrides(name, get(get(params, "agents"), name))
        except ValueError as exc:
            raise ParamsError(str(exc)) from None
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

"""The `maq` command line.

    maq data check PATH [--task door]     validate a demonstrations pickle (official MAQ format)
    maq data generate --task relocate --episodes 25 --seed 0 [--store DIR]
                                          synthetic (not human) demonstrations as a Minari dataset
    maq hub push DIR REPO_ID [--revision main] [--private] [--dataset]
                                          upload an artifact dir in one commit; prints '<sha> <repo>@<branch>'
    maq hub pull REPO@REV [--dataset]     download an artifact into the Hugging Face cache; prints its directory

    maq --version                         the installed maq-hub version
    maq --print-completion bash           shell completion (bash, zsh, tcsh, fish, powershell; by shtab)

Each command group is added by one `_add_*` function below; handlers import lazily so that
`maq --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="demonstration data: check, generate").add_subparsers(dest="data_command", required=True)

    check = data.add_parser("check", help="validate a demonstrations pickle; prints 'is legal' or 'illegal: <why>'")
    check.add_argument("path", help="pickle file: a list of trajectory dicts (official MAQ format)")
    check.add_argument("--task", help="also check observation/action sizes against this task")
    check.set_defaults(handler=_data_check)

    generate = data.add_parser(
        "generate", help="write synthetic (not human) demonstrations of a task as a Minari dataset"
    )
    generate.add_argument("--task", required=True, help="task with a synthetic demonstrator (see pipeline.demonstrator)")
    generate.add_argument("--episodes", type=int, required=True, help="successful episodes to keep")
    generate.add_argument("--seed", type=int, required=True, help="base seed; attempt i uses seed + i")
    generate.add_argument("--store", help="Minari store root (default: data/demos/<task>)")
    generate.set_defaults(handler=_data_generate)


def _data_check(args: argparse.Namespace) -> int:
    from pipeline.data.validate import check_pickle_file

    problem = check_pickle_file(args.path, task=args.task)
    if problem is None:
        print("is legal")
        return 0
    print(f"illegal: {problem}")
    return 1


def _add_hub_commands(sub: argparse._SubParsersAction) -> None:
    hub = sub.add_parser("hub", help="share artifacts on the Hugging Face Hub: push, pull").add_subparsers(dest="hub_command", required=True)

    push = hub.add_parser("push", help="upload an artifact directory in one commit; prints '<commit sha> <repo>@<branch>'")
    push.add_argument("dir", help="artifact directory: config.json, model.safetensors, README.md (or, with --dataset, a prepared dataset)")
    push.add_argument("repo_id", help="namespace/name on the Hub")
    push.add_argument("--revision", default="main", help="branch to commit to (created if missing; default main)")
    push.add_argument("--private", action="store_true", help="create the repo private (if it does not exist yet)")
    push.add_argument("--message", help="commit message")
    push.add_argument("--dataset", action="store_true", help="push a prepared dataset (data/prepared/<task>) as a dataset repo")
    push.set_defaults(handler=_hub_push)

    pull = hub.add_parser("pull", help="download an artifact into the Hugging Face cache; prints its directory there")
    pull.add_argument("spec", help="REPO@REVISION (a commit sha, branch or tag), optionally prefixed 'hub:'")
    pull.add_argument("--cache-dir", default=None, help="HF cache to use (default: huggingface_hub's, under HF_HOME)")
    pull.add_argument("--dataset", action="store_true", help="pull a dataset repo")
    pull.set_defaults(handler=_hub_pull)


def _hub_push(args: argparse.Namespace) -> int:
    from pipeline.hub import HubError, push_artifact

    try:
        result = push_artifact(args.dir, args.repo_id, revision=args.revision, private=args.private, commit_message=args.message,
                               repo_type="dataset" if args.dataset else "model")
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{result.commit_sha} {result.repo_id}@{result.revision}")
    return 0


def _hub_pull(args: argparse.Namespace) -> int:
    from pipeline.hub import HubError, download_artifact

    try:
        path = download_artifact(args.spec, cache_dir=args.cache_dir, repo_type="dataset" if args.dataset else "model")
    except HubError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


def _data_generate(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pipeline.artifacts.layout import Layout
    from pipeline.demonstrator.dataset import generate_dataset

    store = Path(args.store) if args.store else Layout().demos(args.task)
    try:
        summary = generate_dataset(args.task, args.episodes, args.seed, store)
    except (KeyError, RuntimeError) as exc:  # no demonstrator for the task / too many failed attempts
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def _add_sweep_commands(sub: argparse._SubParsersAction) -> None:
    sweep = sub.add_parser("sweep", help="grid sweeps as DVC experiments: queue, run, collect").add_subparsers(dest="sweep_command", required=True)
    q = sweep.add_parser("queue", help="queue one `dvc exp run` per point of tasks × methods × H × K × seeds")
    q.add_argument("--tasks", nargs="+", required=True)
    q.add_argument("--methods", nargs="+", required=True)
    q.add_argument("--H", nargs="+", type=int, required=True, help="macro lengths")
    q.add_argument("--K", nargs="+", type=int, required=True, help="codebook sizes")
    q.add_argument("--seeds", nargs="+", type=int, required=True)
    q.add_argument("--name", default="sweep", help="experiment name prefix (default sweep)")
    q.add_argument("--dry-run", action="store_true", help="print the dvc commands, queue nothing")
    q.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: queue in DVC (dvc exp run --queue); ray: only record the points and commit (sweeps/<name>.points.json)")
    q.set_defaults(handler=_sweep_queue)
    r = sweep.add_parser("run", help="run the queue with N workers (dvc queue start -j N), or a recorded sweep's points as Ray tasks")
    r.add_argument("--engine", choices=("local", "ray"), default="local", help="local (default): dvc queue start; ray: one Ray task per point")
    r.add_argument("--jobs", type=int, default=1, help="local engine: parallel DVC queue workers")
    r.add_argument("--name", default="sweep", help="ray engine: the recorded sweep to run (default sweep)")
    r.add_argument("--address", help="ray engine: the cluster's address, HOST:PORT (default: RAY_ADDRESS, a cluster started on this machine, or a local one)")
    r.add_argument("--num-cpus", type=float, help="ray engine: CPUs per point (default: params runtime.sweep_point_cpus at the sweep's commit)")
    r.add_argument("--num-gpus", type=float, help="ray engine: GPUs per point (default: params runtime.sweep_point_gpus at the sweep's commit)")
    r.add_argument("--max-retries", type=int, default=3, help="ray engine: retries of a point whose worker died (default 3)")
    r.add_argument("--git-remote", default="origin", help="ray engine: Git remote (name or URL) workers clone from and push experiments to (default origin)")
    r.add_argument("--dvc-remote", help="ray engine: the shared DVC remote's name (default: the project's default remote)")
    r.set_defaults(handler=_sweep_run)
    c = sweep.add_parser("collect", help="aggregate finished experiments into sweeps/<name>.csv and .md")
    c.add_argument("--name", default="sweep")
    c.set_defaults(handler=_sweep_collect)


def _sweep_call(fn) -> int:
    try:
        fn()
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _sweep_run(args: argparse.Namespace) -> int:
    if args.engine == "local":
        from pipeline.sweep import run_queue

        return _sweep_call(lambda: run_queue(args.jobs))
    from pipeline.sweep_ray import SweepInterrupted, run_sweep

    try:
        failed = run_sweep(args.name, args.address, args.num_cpus, args.num_gpus, args.max_retries, args.git_remote, args.dvc_remote)
    except SweepInterrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _sweep_queue(args: argparse.Namespace) -> int:
    from pipeline.sweep import git_head, grid, queue, record_sweep

    def go():
        points = grid(args.tasks, args.methods, args.H, args.K, args.seeds)
        if args.engine == "ray":
            path = record_sweep(points, args.name, git_head(clean=True))
            print(f"recorded {len(points)} points in {path}; push this commit to the Git remote and run them with "
                  f"`maq sweep run --engine ray --name {args.name}`")
            return
        for command in queue(points, args.name, dry_run=args.dry_run):
            print(" ".join(command))
        print(f"{'would queue' if args.dry_run else 'queued'} {len(points)} experiments; run them with `maq sweep run --jobs N`")

    return _sweep_call(go)


def _sweep_collect(args: argparse.Namespace) -> int:
    from pipeline.sweep import collect

    def go():
        csv_path, md_path = collect(args.name)
        print(f"wrote {csv_path} and {md_path}")

    return _sweep_call(go)


def _add_evaluate_command(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="evaluate an agent directory or a Hub agent (hub:<repo>@<rev>) by the protocol")
    ev.add_argument("agent", help="agent directory, or hub:<repo>@<revision>")
    ev.add_argument("--task", required=True)
    ev.add_argument("--seed", type=int, required=True, help="base seed: episode i uses env seed 200·seed + i")
    ev.add_argument("--episodes", type=int, default=None, help="default: params.yaml evaluate.episodes")
    ev.add_argument("--codebook", help="codebook directory or hub:<repo>@<revision> (MAQ agents; default models/codebooks/<task>)")
    ev.add_argument("--out", required=True, help="output directory (episodes.parquet, trajectories.safetensors, summary.json)")
    ev.set_defaults(handler=_evaluate)


def _evaluate(args: argparse.Namespace) -> int:
    import json
    from dataclasses import replace
    from pathlib import Path

    from pipeline.artifacts.layout import Layout
    from pipeline.config import load_params
    from pipeline.evaluation import run_evaluate
    from pipeline.hub import HubError, download_artifact

    layout = Layout()

    def local(spec: str) -> Path:
        return download_artifact(spec) if spec.startswith("hub:") else Path(spec)

    try:
        agent_dir = local(args.agent)
        config = json.loads((agent_dir / "config.json").read_text())
        codebook_dir = local(args.codebook or str(layout.codebook(args.task))) if config.get("codebook_hash") else None
        cfg = load_params().evaluate
        cfg = replace(cfg, episodes=args.episodes or cfg.episodes)
        out = Path(args.out)
        s = run_evaluate(args.task, config["method"], args.seed, cfg, agent_dir=agent_dir, codebook_dir=codebook_dir,
                         prepared_dir=layout.prepared(args.task), references_path=layout.references_file(args.task),
                         out_dir=out, metrics_path=out / "metrics.json")
    except (HubError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shown = {"normalized score": "normalized_score_mean", "success": "success_rate", "DTW similarity": "dtw_state_mean_similarity",
             "paired DTW similarity": "paired_dtw_state_similarity", "discriminator AUC": "discriminator_auc"}
    numbers = ", ".join(f"{name} {s[key]:.2f}" for name, key in shown.items() if s.get(key) is not None)
    print(f"{config['method']} on {args.task} ({cfg.protocol} protocol): {numbers} -> {out}")
    return 0


def package_version() -> str:
    """The installed maq-hub version (pyproject.toml), or "unknown" when running from a checkout that is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("maq-hub")
    except PackageNotFoundError:
        return "unknown (not installed: run `make install`)"


def build_parser() -> argparse.ArgumentParser:
    import shtab

    parser = argparse.ArgumentParser(prog="maq", description="MAQ hub: human-like RL agents from demonstrations")
    parser.add_argument("--version", action="version", version=f"maq {package_version()}")
    shtab.add_argument_to(parser, "--print-completion", help="print a shell completion script: bash, zsh, tcsh, fish or powershell "
                          "(e.g. `maq --print-completion bash > ~/.local/share/bash-completion/completions/maq`)")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    _add_hub_commands(sub)
    _add_evaluate_command(sub)
    _add_sweep_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

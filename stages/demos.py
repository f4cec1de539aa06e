"""DVC stage `demos@<task>`: the synthetic demonstrations of a task, in data/demos/<task>/.

When `sources.<task>` is `synthetic`, runs the project's demonstrator and writes the Minari
dataset `synthetic/<task>/human-v0` with `data/demos/<task>/` as its Minari store. For any other
source the demonstrations live outside the pipeline, and the stage only writes a note saying so
(so the DAG has the same shape whatever the source).
"""

import argparse
import shutil

from pipeline.artifacts.layout import Layout
from pipeline.config import load_params
from pipeline.entry import run_stage
from pipeline.io import write_text_atomic


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True)
    args = parser.parse_args(argv)

    params = load_params()
    source = getattr(params.sources, args.task)
    store = Layout().demos(args.task)
    if source != "synthetic":
        shutil.rmtree(store, ignore_errors=True)
        write_text_atomic(store / "SOURCE.md", f"The demonstrations of {args.task} come from `{source}`; no synthetic ones were generated.\n")
        print(f"demos@{args.task}: source is {source}; nothing to generate")
        return

    from pipeline.demonstrator.dataset import generate_dataset

    cfg = params.demos
    summary = generate_dataset(args.task, episodes=cfg.episodes, seed=cfg.seed, store_root=store)
    print(f"demos@{args.task}: {summary}")


if __name__ == "__main__":
    run_stage(main)

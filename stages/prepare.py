"""DVC stage `prepare@<task>`: demonstrations → validated train/test splits in data/prepared/<task>/.

Reads params `sources.<task>` and `prepare.*`, and the source's files in data/sources/<task>/ (a `pkl:` file must
lie there; a `minari:` dataset is read from there when it is there); writes exactly `data/prepared/<task>/`.
"""

import argparse
import sys

from pipeline.artifacts.layout import Layout
from pipeline.config import load_params
from pipeline.data.prepare import write_prepared
from pipeline.data.sources import load_source
from pipeline.entry import run_stage


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task", required=True)
    args = parser.parse_args(argv)

    params = load_params()
    cfg = params.prepare
    layout = Layout()
    loaded = load_source(
        args.task,
        getattr(params.sources, args.task),
        synthetic_store=layout.demos(args.task),
        allow_download=cfg.allow_download,
        sources_dir=layout.sources(args.task),
    )
    if loaded.untracked is not None:
        print(f"note: {loaded.source} was read from {loaded.untracked}, which DVC does not track: a dataset rewritten "
              f"there is not noticed. Move it to {layout.sources(args.task)}/ to make it a dependency of prepare@{args.task}",
              file=sys.stderr)
    meta = write_prepared(args.task, loaded, cfg, layout.prepared(args.task))
    print(
        f"prepare@{args.task}: {meta['train']['episodes']} train / {meta['test']['episodes']} test episodes, "
        f"{meta['train']['steps'] + meta['test']['steps']} steps from {loaded.source} "
        f"(sha256 {loaded.sha256[:12]})"
    )


if __name__ == "__main__":
    run_stage(main)

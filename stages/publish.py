"""Stage `publish`: stage every codebook and agent with a Hub model card; push when `hub.push`.

    python -m stages.publish

Writes models/publish/<repo name>/ (config.json, model.safetensors, README.md with model-index
results) and models/publish/published.json. Nothing touches the network unless params.yaml sets
`hub.push: true`; the token comes from HF_TOKEN or `hf auth login`.
"""

from __future__ import annotations

import argparse

from pipeline.config import load_params
from pipeline.entry import run_stage
from pipeline.publish import run_publish


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    record = run_publish(load_params())
    if record["pushed"]:
        for commit in record["commits"]:
            print(f"pushed {commit['repo_id']} at {commit['commit_sha']}  (pull: {commit['pull']})")
    else:
        print(f"publish: staged {len(record['staged'])} artifacts in models/publish/; hub.push is false, nothing pushed")


if __name__ == "__main__":
    run_stage(main)

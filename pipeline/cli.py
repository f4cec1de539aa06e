"""The `maq` command line.

    maq data check PATH [--task door]     validate a demonstrations pickle (official MAQ format)

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


def _data_check(args: argparse.Namespace) -> int:
    from pipeline.data.validate import check_pickle_file

    problem = check_pickle_file(args.path, task=args.task)
    if problem is None:
        print("is legal")
        return 0
    print(f"illegal: {problem}")
    return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maq", description="MAQ hub: human-like RL agents from demonstrations")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())

"""The one entry point every stage goes through: a user's mistake ends as one clear line.

    if __name__ == "__main__":
        run_stage(main)

`UserError` is the base of the project's errors about the user's input (params, data sources,
demonstrations, Hub requests); their messages say what is wrong and what to do. `run_stage`
prints such an error as `error: <message>` on stderr and exits with status 2, without a
traceback; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """An error in what the user gave (a params value, a file, a source), not in the code."""


def run_stage(main: Callable[[], None]) -> None:
    try:
        main()
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)

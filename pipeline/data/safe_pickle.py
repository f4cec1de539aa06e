"""A restricted unpickler for demonstration pickles (the official MAQ `.pkl` format).

A pickle can name any importable callable and the standard `pickle.load` calls it: loading an
untrusted pickle is running untrusted code. `safe_load` only lets a pickle build numpy arrays,
numpy dtypes and numpy scalars; lists, dicts, tuples, numbers, strings and bytes need no import
at all. Anything else (`os.system`, `builtins.eval`, `subprocess.Popen`, …) is refused with
`UnsafePickleError` before it is called.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

# (module, name) pairs a demonstrations pickle may reference. numpy 1.x pickles name
# `numpy.core.*`, numpy 2.x `numpy._core.*`; both build only arrays, dtypes and scalars.
_ALLOWED_GLOBALS = {
    (module, name)
    for core in ("numpy.core", "numpy._core")
    for module, name in [
        (f"{core}.multiarray", "_reconstruct"),  # ndarray.__reduce__ (protocols <= 4)
        (f"{core}.multiarray", "scalar"),  # numpy scalars, e.g. np.float64(1.0)
        (f"{core}.numeric", "_frombuffer"),  # ndarray.__reduce_ex__(5) (protocol 5 buffers)
    ]
} | {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),  # protocol-2 pickles store array bytes as latin-1 text
}


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something other than numpy arrays, dtypes and plain data."""


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"refused to load {module}.{name}: a demonstrations pickle may only contain "
                "numpy arrays, lists, dicts, numbers and strings"
            )
        return super().find_class(module, name)


def safe_loads(data: bytes):
    """Unpickle `data`, admitting only numpy arrays/dtypes/scalars and plain Python data."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def safe_load(path: str | Path):
    """Unpickle the file at `path` with `safe_loads`."""
    return safe_loads(Path(path).read_bytes())

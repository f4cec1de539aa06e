"""A restricted unpickler for demonstration pickles (the official MAQ `.pkl` format).

A pickle can name any importable callable and the standard `pickle.load` calls it: loading an
untrusted pickle is running untrusted code. `safe_load` only lets a pickle build numpy arrays,
numpy dtypes and numpy scalars; lists, dicts, tuples, numbers, strings and bytes need no import
at all. Anything else (`os.system`, `builtins.eval`, `subprocess.Popen`, …) is refused with
`UnsafePickleError` before it is called.

An array whose stored shape does not fit its bytes (a forged or corrupt file, e.g. a shape of
10¹² rows over a few bytes) fails with `CorruptArrayError`, which names the dict key the array
was stored under. To know that key the unpickler is pickle's pure-Python one (it exposes its
stack); demonstration files are a few arrays, so its speed does not matter.
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


class CorruptArrayError(pickle.UnpicklingError):
    """An array in the pickle cannot be built from what the file stores."""


class RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: see the module docstring
    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"refused to load {module}.{name}: a demonstrations pickle may only contain "
                "numpy arrays, lists, dicts, numbers and strings"
            )
        return super().find_class(module, name)

    def _building(self, load) -> None:
        """Run a BUILD or REDUCE opcode, naming the array's dict key if numpy refuses it."""
        # stack: [..., key, object or callable, state or args]; the key is there inside a dict
        key = self.stack[-3] if len(self.stack) >= 3 and isinstance(self.stack[-3], str) else None
        try:
            load(self)
        except (ValueError, TypeError, MemoryError, OverflowError) as exc:
            where = f"the array under key {key!r}" if key is not None else "an array"
            raise CorruptArrayError(
                f"{where} cannot be built: its stored shape does not fit its data ({type(exc).__name__}: {exc}); "
                "the file is corrupt or forged"
            ) from None

    def load_build(self):
        self._building(pickle._Unpickler.load_build)

    def load_reduce(self):
        self._building(pickle._Unpickler.load_reduce)

    dispatch[pickle.BUILD[0]] = load_build
    dispatch[pickle.REDUCE[0]] = load_reduce


def safe_loads(data: bytes):
    """Unpickle `data`, admitting only numpy arrays/dtypes/scalars and plain Python data."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def safe_load(path: str | Path):
    """Unpickle the file at `path` with `safe_loads`."""
    return safe_loads(Path(path).read_bytes())

"""Reading the prepared data's NumPy files: a truncated or foreign `.npy` / `.npz` stops the stage
with one line naming it (rerun the prepare stage), not a reader's traceback."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from d2v.data.errors import readable

REMEDY = "rerun the prepare stage"


def load_array(path: str | os.PathLike, mmap_mode: str | None = None) -> np.ndarray:
    """The array in an `.npy` file (memory-mapped with `mmap_mode`); no pickles."""
    with readable(path, REMEDY):
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)


def load_arrays(path: str | os.PathLike, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named arrays of an `.npz` file, read whole (a missing one is refused too)."""
    with readable(path, REMEDY), np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in names}

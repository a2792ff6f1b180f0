"""The prepared text (written by `text_prepare.py`): pretraining blocks and encoded GLUE splits.

    out_dir/tokenizer.json                  byte-level BPE (`bpe.py`), specials at ids 0..4
    out_dir/pretrain/train.npy              int32 (N, T) blocks of T = block_size tokens
    out_dir/pretrain/valid.npy              int32 (M, T) held-out blocks (about 2%)
    out_dir/glue/<task>/<split>.npz         input_ids int32 (N, L), labels (N,): int64 class ids
                                            or float32 regression targets
    out_dir/meta.json                       vocab, special ids, sizes, corpus and task stats

Dims: N examples or blocks, T = block_size, L = max_seq_len. Training reads token ids only: this
module imports no tokenizer and no raw-text code.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from d2v.data.arrays import load_array, load_arrays
from d2v.data.errors import DataError


@dataclass
class GlueSplit:
    input_ids: np.ndarray  # (N, L) int32, `<pad>`-padded
    labels: np.ndarray  # (N,) int64 class ids or float32 targets


def load_blocks(prepared_dir: str | os.PathLike, split: str = "train") -> np.ndarray:
    """Pretraining blocks of `split` ("train" or "valid"), memory-mapped: int32 (N, T)."""
    path = Path(prepared_dir) / "pretrain" / f"{split}.npy"
    if not path.is_file():
        raise DataError(f"no pretraining split {split!r}: {path} does not exist")
    return load_array(path, mmap_mode="r")


def load_glue_split(prepared_dir: str | os.PathLike, task: str, split: str) -> GlueSplit:
    path = Path(prepared_dir) / "glue" / task / f"{split}.npz"
    if not path.is_file():
        raise DataError(f"no prepared GLUE split {task}/{split}: {path} does not exist")
    return GlueSplit(**load_arrays(path, ("input_ids", "labels")))

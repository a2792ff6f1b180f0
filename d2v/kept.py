"""Values computed from a tensor, kept while the tensor lives and is unmodified: the same batch
tensor handed back (the EMA teacher's pass over the student's batch, the length buckets a training
pass keeps across epochs) is computed from once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor
from torch.utils.weak import WeakIdKeyDictionary


class KeptPerTensor:
    """`get(key, compute)`: compute() once per live, unmodified `key` tensor (its in-place version
    is checked); an entry goes with its tensor. A copy or an unpickled one starts empty (weak
    references neither copy nor pickle)."""

    def __init__(self) -> None:
        self._kept = WeakIdKeyDictionary()

    def get(self, key: Tensor, compute: Callable[[], Any]) -> Any:
        kept = self._kept.get(key)
        if kept is not None and kept[0] == key._version:
            return kept[1]
        value = compute()
        self._kept[key] = (key._version, value)
        return value

    def __len__(self) -> int:
        return len(self._kept)

    def __reduce__(self) -> tuple:
        return (KeptPerTensor, ())

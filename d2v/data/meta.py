"""The prepared data's metadata (`<prepared>/meta.json`): one typed record per modality, written by
its prepare stage and read by training and the downstream tasks through `read_meta`.

Reading is strict: a key the record lacks, or a missing one, is a DataError naming the file and
the keys (a meta.json from another prepare version; rerun the prepare stage). Nested statistics
(counts per split, skipped files, task info) stay plain JSON mappings.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from d2v.data.errors import DataError

M = TypeVar("M", bound="PreparedMeta")


@dataclass(frozen=True)
class PreparedMeta:
    @classmethod
    def from_json(cls: type[M], data: dict[str, Any], source: str = "meta.json") -> M:
        """The record of `data`; DataError naming `source` on unknown or missing keys."""
        if not isinstance(data, dict):
            raise DataError(f"{source}: expected a JSON object, got {type(data).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown, missing = sorted(set(data) - names), sorted(names - set(data))
        if unknown or missing:
            raise DataError(
                f"{source}: not a prepared {cls.kind} meta.json (unknown keys {unknown}, missing "
                f"keys {missing}): rerun the prepare stage"
            )
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    kind = "data"


@dataclass(frozen=True)
class VisionMeta(PreparedMeta):
    kind = "vision"
    classes: list[str]
    image_size: int
    channels: int
    shard_size: int
    counts: dict[str, int]  # split -> images
    shards: dict[str, int]  # split -> shard files
    skipped: dict[str, Any]  # count, files
    mean: list[float]  # per channel, train split, in [0, 1] units
    std: list[float]


@dataclass(frozen=True)
class SpeechMeta(PreparedMeta):
    kind = "speech"
    sample_rate: int
    vocab: list[str]  # CTC letters, index = label id
    max_seconds: float
    normalize: str
    splits: dict[str, dict[str, Any]]  # split -> utterances, speakers, seconds, ...
    eval_splits: list[str]  # headline first
    dev_split: str
    source: str
    skipped: dict[str, Any]  # count, by_reason, files


@dataclass(frozen=True)
class TextMeta(PreparedMeta):
    kind = "text"
    vocab_size: int
    special_ids: dict[str, int]  # bos, pad, eos, unk, mask
    block_size: int
    max_seq_len: int
    corpus: dict[str, Any]  # documents, words, tokens, blocks, skipped lines, task_adaptive
    tasks: dict[str, dict[str, Any]]  # GLUE task -> kind, labels, metrics, splits, ...
    skipped_rows: dict[str, dict[str, Any]]  # task -> split -> read stats
    # no timings: the folder is a pure function of its inputs, so a re-run changes no hash


def read_meta(prepared_dir: str | os.PathLike, kind: type[M]) -> M:
    """The `meta.json` of a prepared folder as `kind`'s record."""
    path = Path(prepared_dir) / "meta.json"
    if not path.is_file():
        raise DataError(f"no {path}: run the {kind.kind} prepare stage first")
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"cannot read prepared-data metadata {path}: {e}") from e
    return kind.from_json(data, str(path))

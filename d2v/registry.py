"""The modalities: one entry each, naming the function of each of its four roles.

A role is a `module:function` path imported on first use, so importing the registry imports no
modality code: download and prepare load no torch, training loads no decoder or tokenizer trainer,
and a stage's dvc.yaml deps name only the code of the roles it runs (tests/test_stage_deps.py
follows each `resolve(modality, "<role>")`). Adding a modality: its `Modality` value and configs
(d2v/config), its own files, and one entry here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from d2v.config import Modality

Role = Literal["download", "prepare", "pretrain", "downstream"]


@dataclass(frozen=True)
class ModalityEntry:
    download: str  # (cfg: <M>DataConfig, out_dir) -> DataStep: raw data in the layout prepare reads
    prepare: str  # (cfg, raw_dir, out_dir) -> DataStep: raw data decoded into shards
    pretrain: str  # (params, prepared_dir) -> PretrainSpec
    downstream: str  # (params, task, prepared_dir) -> DownstreamTask


@dataclass(frozen=True)
class DataStep:
    """What a download or prepare did: its stats (the stage's return value; for prepare, the
    prepared meta) and the metrics the stage logs."""

    stats: dict
    metrics: dict[str, float]


MODALITIES: dict[Modality, ModalityEntry] = {
    Modality.vision: ModalityEntry(
        download="d2v.data.vision:download",
        prepare="d2v.data.vision:prepare",
        pretrain="d2v.modalities.vision:pretrain_spec",
        downstream="d2v.modalities.vision:downstream_task",
    ),
    Modality.speech: ModalityEntry(
        download="d2v.data.speech:download",
        prepare="d2v.data.speech:prepare",
        pretrain="d2v.modalities.speech:pretrain_spec",
        downstream="d2v.modalities.speech:downstream_task",
    ),
    Modality.text: ModalityEntry(
        download="d2v.data.text:download",
        prepare="d2v.data.text:prepare",
        pretrain="d2v.modalities.text:pretrain_spec",
        downstream="d2v.modalities.text:downstream_task",
    ),
}


def resolve(modality: Modality, role: Role) -> Callable:
    """The function of `modality`'s `role`, its module imported now."""
    entry = MODALITIES.get(modality)
    if entry is None:
        raise NotImplementedError(f"modality {modality.value} is not available yet")
    module, _, name = getattr(entry, role).partition(":")
    return getattr(importlib.import_module(module), name)

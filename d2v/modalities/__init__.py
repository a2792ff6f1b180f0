"""Per-modality pieces (frontends, data views, masks). Which module serves a modality is its
entry in d2v/registry.py; these two look it up for the training and downstream stages."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from d2v.config import Modality, Params
from d2v.registry import resolve

if TYPE_CHECKING:
    from d2v.downstream import DownstreamTask
    from d2v.train import PretrainSpec


def pretrain_spec(params: Params, modality: Modality, prepared_dir: Path) -> PretrainSpec:
    return resolve(modality, "pretrain")(params, prepared_dir)


def downstream_task(params: Params, task: str, prepared_dir: Path) -> DownstreamTask:
    return resolve(params.finetune[task].modality, "downstream")(params, task, prepared_dir)

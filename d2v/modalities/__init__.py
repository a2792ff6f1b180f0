"""Per-modality pieces (frontends, data views, masks). The registries below are the one place
that maps a modality to them; speech and text add their entries here."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from d2v.config import Modality, Params

if TYPE_CHECKING:
    from d2v.downstream import DownstreamTask
    from d2v.train import PretrainSpec


def pretrain_spec(params: Params, modality: Modality, prepared_dir: Path) -> PretrainSpec:
    return _registry(modality)[0](params, prepared_dir)


def downstream_task(params: Params, task: str, prepared_dir: Path) -> DownstreamTask:
    modality = params.finetune[task].modality
    return _registry(modality)[1](params, task, prepared_dir)


def _registry(modality: Modality) -> tuple[Callable, Callable]:
    if modality == Modality.vision:
        from d2v.modalities import vision

        return vision.pretrain_spec, vision.downstream_task
    if modality == Modality.speech:
        from d2v.modalities import speech

        return speech.pretrain_spec, speech.downstream_task
    if modality == Modality.text:
        from d2v.modalities import text

        return text.pretrain_spec, text.downstream_task
    raise NotImplementedError(f"modality {modality.value} is not available yet")

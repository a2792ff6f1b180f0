"""What fine-tuning and evaluation need from a downstream task, whatever the modality."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from torch import Tensor, nn

from d2v.config import Modality, SpanMaskConfig, TaskConfig
from d2v.encoder import Encoder

Pass = Iterable[tuple[Any, Tensor]]  # one pass of (input, label) batches

HEADS = ("classify", "regress", "ctc")


@dataclass
class DownstreamTask:
    name: str
    modality: Modality
    dataset: str  # what the data really is (e.g. fashion-mnist in ImageNet layout)
    metric: str  # the official metric, the key in metrics/eval/<task>.json
    num_classes: int  # classes; 1 for regression; the vocabulary size for CTC
    train_labels: np.ndarray  # (N,) strata for balanced label subsets (classes, or speakers)
    build_encoder: Callable[[], Encoder]  # same architecture as pretraining, random init
    train_pass: Callable[[np.ndarray, int, int], Pass]  # (indices, batch size, seed) -> a pass
    eval_pass: Callable[[int], Pass]  # (batch size) -> a pass over the held-out split
    # (predictions, labels) -> {metric: value}; predictions as the head's `predict` gives them
    score: Callable[[Any, Any], dict[str, float]]
    head: str = "classify"  # classify | regress | ctc
    vocab: list[str] | None = None  # ctc: characters, index 0 = blank
    # more held-out sets, scored with their name as a prefix (e.g. real_wer, test_clean_wer)
    extra_evals: dict[str, Callable[[int], Pass]] = field(default_factory=dict)
    subset: Callable[[float, int], np.ndarray] | None = None  # (fraction, seed) -> indices
    # the split a study selects on when the task has one apart from eval_pass (speech: dev)
    dev_pass: Callable[[int], Pass] | None = None
    notes: dict[str, Any] = field(default_factory=dict)  # e.g. {"synthetic": True}


def build_model(task: DownstreamTask, encoder: Encoder, cfg: TaskConfig) -> nn.Module:
    """The encoder with the task's head."""
    from d2v.heads import Classifier, CTCModel, Regressor

    if task.head == "regress":
        return Regressor(encoder, cfg.head_norm)
    if task.head == "ctc":
        assert task.vocab is not None
        mask = SpanMaskConfig(prob=cfg.mask_prob, length=10, min_spans=0) if cfg.mask_prob else None
        return CTCModel(encoder, task.vocab, mask)
    return Classifier(encoder, task.num_classes, cfg.head_norm)


def selection_view(task: DownstreamTask) -> DownstreamTask:
    """The task as a study (sweep, ablation grid, bench probe) scores it: on its dev split where
    it has one, so that choosing among configs never looks at the split `evaluate` reports (the
    paper's Table 5 is on dev-other too). Tasks without one (GLUE dev, ImageNet val) as they are."""
    if task.dev_pass is None:
        return task
    return replace(
        task, eval_pass=task.dev_pass, extra_evals={}, notes={**task.notes, "eval_split": "dev"}
    )

"""What fine-tuning and evaluation need from a downstream task, whatever the modality."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from torch import Tensor

from d2v.config import Modality
from d2v.encoder import Encoder

Pass = Iterable[tuple[Tensor, Tensor]]  # one pass of (input, label) batches


@dataclass
class DownstreamTask:
    name: str
    modality: Modality
    dataset: str  # what the data really is (e.g. fashion-mnist in ImageNet layout)
    metric: str  # the official metric, the key in metrics/eval/<task>.json
    num_classes: int
    train_labels: np.ndarray  # (N,) for class-balanced label subsets
    build_encoder: Callable[[], Encoder]  # same architecture as pretraining, random init
    train_pass: Callable[[np.ndarray, int, int], Pass]  # (indices, batch size, seed) -> a pass
    eval_pass: Callable[[int], Pass]  # (batch size) -> a pass over the held-out split
    score: Callable[[Tensor, Tensor], dict[str, float]]  # (logits, labels) -> {metric: value}

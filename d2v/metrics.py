"""Downstream metrics with each task's official name, and their summary over seeds."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from torch import Tensor


def top1(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in percent. logits: (N, C), labels: (N,)."""
    return float((logits.argmax(-1) == labels).float().mean().item() * 100.0)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample std (ddof=1; 0 for one value) over seeds."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0}

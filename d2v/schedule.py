"""Learning-rate schedule as a pure function of the step."""

from __future__ import annotations

import math


def lr_at(
    step: int, base_lr: float, warmup_steps: int, total_steps: int, min_ratio: float
) -> float:
    """Linear warmup from 0 over `warmup_steps`, then cosine decay to `min_ratio * base_lr`."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return base_lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))

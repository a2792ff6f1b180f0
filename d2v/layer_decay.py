"""Layer-wise learning-rate decay for fine-tuning (BEiT; data2vec fine-tunes ViT-B with 0.65):
the head learns at the full rate, each block below it at `decay` times the one above, the
frontend (patch / feature / token embedding) at decay^(depth + 1). Upper layers adapt to the task,
lower layers keep what pretraining put there.
"""

from __future__ import annotations

import re
from typing import Any

from torch import nn

_BLOCK = re.compile(r"(?:^|\.)backbone\.blocks\.(\d+)\.")


def layer_id(name: str, depth: int) -> int:
    """0 for the frontend, i + 1 for backbone block i, depth + 1 for everything above."""
    if ".frontend." in f".{name}":
        return 0
    m = _BLOCK.search(name)
    return int(m.group(1)) + 1 if m else depth + 1


def layer_decay_groups(
    model: nn.Module, depth: int, decay: float, weight_decay: float
) -> list[dict[str, Any]]:
    """Optimizer groups per (layer, decayed or not), each with `lr_scale` = decay^(depth + 1 -
    layer). No weight decay on biases, norms, positions and embeddings vectors (1-D params)."""
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = layer_id(name, depth)
        key = (layer, p.ndim > 1)
        if key not in groups:
            groups[key] = {
                "params": [],
                "weight_decay": weight_decay if p.ndim > 1 else 0.0,
                "lr_scale": decay ** (depth + 1 - layer),
            }
        groups[key]["params"].append(p)
    return [groups[k] for k in sorted(groups)]

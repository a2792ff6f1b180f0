"""data2vec targets: the average of the teacher's top-K layer outputs, each normalized first.

Dimensions: B batch, T time steps, D width, L layers.
Padding masks: True = padding (left out of instance-norm statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from d2v.config import Method, Modality, Norm, TargetConfig

# Paper defaults for a 12-layer Base model (DESIGN.md). data2vec: K = 8 speech, 6 vision,
# 10 text; data2vec 2.0: 8 audio, all blocks for images and text.
PAPER_TOP_K = {
    Method.v1: {Modality.speech: 8, Modality.vision: 6, Modality.text: 10},
    Method.v2: {Modality.speech: 8, Modality.vision: 12, Modality.text: 12},
}
PAPER_DEPTH = 12


def resolve_top_k(
    top_k: int | None, modality: Modality, depth: int, method: Method = Method.v1
) -> int:
    """The configured K, or the paper's K for the modality and method scaled to `depth`."""
    if top_k is not None:
        return top_k
    paper = PAPER_TOP_K[method][modality]
    return max(1, min(depth, round(paper * depth / PAPER_DEPTH)))


def normalize(
    y: Tensor, norm: Norm, padding_mask: Tensor | None = None, eps: float = 1e-5
) -> Tensor:
    """y: (B, T, D) -> same shape, float32.

    instance: zero mean, unit variance over time per (sample, channel), padding excluded;
    layer: zero mean, unit variance over channels per time step (no affine); none: unchanged.
    """
    y = y.float()
    if norm == Norm.layer:
        return F.layer_norm(y, y.shape[-1:], eps=eps)
    if norm == Norm.instance:
        if padding_mask is None:
            mean = y.mean(1, keepdim=True)
            var = y.var(1, unbiased=False, keepdim=True)
        else:
            keep = (~padding_mask).unsqueeze(-1).float()  # (B, T, 1)
            n = keep.sum(1, keepdim=True).clamp(min=1)
            mean = (y * keep).sum(1, keepdim=True) / n
            var = ((y - mean) ** 2 * keep).sum(1, keepdim=True) / n
        return (y - mean) * torch.rsqrt(var + eps)
    return y


def make_targets(
    layers: list[Tensor], cfg: TargetConfig, top_k: int, padding_mask: Tensor | None = None
) -> Tensor:
    """Average of the top-K normalized layers, optionally normalized again.

    layers: L tensors (B, T, D), bottom first -> (B, T, D) float32.
    """
    top = layers[-top_k:]
    y = sum(normalize(layer, cfg.norm, padding_mask) for layer in top) / len(top)
    return normalize(y, cfg.final_norm, padding_mask)

"""Masks for the student's input, as a MaskInfo record.

Dimensions: B batch, T tokens (patches / frames / subwords), K kept tokens, M masked tokens.
Mask values: True = masked (the student sees the mask embedding there), False = visible.

Every mask has the same number M of masked tokens in each sample, so the visible tokens can be
gathered into a (B, K) tensor with `ids_keep` (data2vec 2.0 encodes only those) and put back in
place with `ids_restore` (MAE's convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from d2v.config import BlockMaskConfig


@dataclass
class MaskInfo:
    mask: Tensor  # (B, T) bool, True = masked
    ids_keep: Tensor  # (B, K) indices of the visible tokens
    ids_restore: Tensor  # (B, T) position of each token in [visible..., masked...] order

    @property
    def num_masked(self) -> int:
        return self.mask.shape[1] - self.ids_keep.shape[1]

    def to(self, device: torch.device | str) -> MaskInfo:
        return MaskInfo(self.mask.to(device), self.ids_keep.to(device), self.ids_restore.to(device))

    def select(self, rows: slice) -> MaskInfo:
        """The masks of a slice of the batch (one rank's share of a global batch)."""
        return MaskInfo(self.mask[rows], self.ids_keep[rows], self.ids_restore[rows])


def mask_from_scores(scores: Tensor, num_masked: int) -> MaskInfo:
    """Mask the `num_masked` highest-scoring tokens of each row. scores: (B, T) float."""
    B, T = scores.shape
    ids_shuffle = torch.argsort(scores, dim=1)  # ascending: kept tokens first
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    keep = T - num_masked
    mask = ids_restore >= keep
    return MaskInfo(mask=mask, ids_keep=ids_shuffle[:, :keep], ids_restore=ids_restore)


def random_mask(batch: int, tokens: int, ratio: float, generator: torch.Generator) -> MaskInfo:
    """Uniformly random tokens, exactly round(ratio * T) masked per sample (MAE)."""
    scores = torch.rand(batch, tokens, generator=generator)
    return mask_from_scores(scores, round(ratio * tokens))


def block_mask(
    batch: int, grid: tuple[int, int], cfg: BlockMaskConfig, generator: torch.Generator
) -> MaskInfo:
    """BEiT block-wise masking on an (h, w) patch grid, vectorized over the batch.

    Each sample draws a sequence of rectangles (area >= cfg.min_patches, aspect ratio
    log-uniform in [min_aspect, 1/min_aspect]) and keeps the longest prefix whose union stays
    within the target count, as BEiT does; the count is then made exact by masking or unmasking
    random patches (data2vec 2.0), so every sample has exactly round(ratio * h * w) masked.
    """
    h, w = grid
    T = h * w
    target = round(cfg.ratio * T)
    n_blocks = max(8, 4 * math.ceil(target / cfg.min_patches))
    g = generator

    area = cfg.min_patches + torch.rand(batch, n_blocks, generator=g) * max(
        target - cfg.min_patches, 0
    )
    log_ar = math.log(cfg.min_aspect)
    aspect = torch.exp(log_ar + torch.rand(batch, n_blocks, generator=g) * (-2 * log_ar))
    bh = torch.sqrt(area * aspect).round().clamp(1, h)
    bw = torch.sqrt(area / aspect).round().clamp(1, w)
    top = (torch.rand(batch, n_blocks, generator=g) * (h - bh + 1)).floor()
    left = (torch.rand(batch, n_blocks, generator=g) * (w - bw + 1)).floor()

    rows = torch.arange(h).view(1, 1, h, 1)
    cols = torch.arange(w).view(1, 1, 1, w)
    inside_r = (rows >= top[..., None, None]) & (rows < (top + bh)[..., None, None])
    inside_c = (cols >= left[..., None, None]) & (cols < (left + bw)[..., None, None])
    blocks = (inside_r & inside_c).flatten(2)  # (B, N, T)
    union = blocks.cumsum(dim=1) > 0  # (B, N, T) union of the first n+1 blocks
    counts = union.sum(-1)  # (B, N)
    last = (counts <= target).sum(1) - 1  # longest prefix within the target; -1: none fits
    chosen = union[torch.arange(batch), last.clamp(min=0)] & (last >= 0)[:, None]

    scores = chosen.float() * 2 + torch.rand(batch, T, generator=g)  # blocks first, then random
    return mask_from_scores(scores, target)

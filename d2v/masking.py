"""Masks for the student's input, as a MaskInfo record.

Dimensions: B batch, T tokens (patches / frames / subwords), K kept tokens, M masked tokens.
Mask values: True = masked (the student sees the mask embedding there), False = visible.

Fixed-size inputs (image patches) get the same number M of masked tokens in each sample, so the
visible tokens can be gathered into a (B, K) tensor with `ids_keep` (data2vec 2.0 encodes only
those) and put back in place with `ids_restore` (MAE's convention). data2vec's variable-length
masks (speech frames, text tokens with padding) mask in proportion to each sample's length; their
MaskInfo has no `ids_keep` / `ids_restore` (None). data2vec 2.0's give every sample the same
count (fairseq `require_same_masks`), so they have both; padding then sits among the visible
slots, flagged by the padding mask. Padding is never masked.

data2vec 2.0 masks each sample `copies` times: a MaskInfo for B samples then has B * copies rows,
sample b's copies in rows b * copies ... (b + 1) * copies - 1 (`repeat_interleave` order).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from d2v.config import (
    BlockMaskConfig,
    InverseBlockMaskConfig,
    SpanMaskConfig,
    TokenMaskConfig,
)


@dataclass
class MaskInfo:
    mask: Tensor  # (B, T) bool, True = masked (regressed by the student)
    ids_keep: Tensor | None = None  # (B, K) indices of the visible tokens; None: counts vary
    ids_restore: Tensor | None = None  # (B, T) position of each token in [visible..., masked...]
    # text (BERT 80/10/10): (B, T) token ids the student sees; masked positions hold the mask
    # token, a random token or the original one. None: the frontend puts its mask embedding.
    corrupt: Tensor | None = None
    copies: int = 1  # rows per sample (data2vec 2.0's multi-mask); the masks are (B * copies, T)

    @property
    def num_masked(self) -> int:
        """Masked tokens per sample (fixed-count masks only)."""
        if self.ids_keep is None:
            raise ValueError("this mask has a different count per sample: use mask.sum(1)")
        return self.mask.shape[1] - self.ids_keep.shape[1]

    @property
    def sample_of_row(self) -> Tensor:
        """(B * copies,) the sample each mask row belongs to."""
        return torch.arange(self.mask.shape[0], device=self.mask.device) // self.copies

    def to(self, device: torch.device | str) -> MaskInfo:
        return MaskInfo(
            *(None if t is None else t.to(device) for t in self._fields()), copies=self.copies
        )

    def select(self, samples: slice) -> MaskInfo:
        """The masks of a slice of the batch's samples (one rank's share of a global batch)."""
        rows = slice(samples.start * self.copies, samples.stop * self.copies)
        return MaskInfo(
            *(None if t is None else t[rows] for t in self._fields()), copies=self.copies
        )

    def _fields(self) -> tuple[Tensor | None, ...]:
        return (self.mask, self.ids_keep, self.ids_restore, self.corrupt)


def mask_from_scores(scores: Tensor, num_masked: int) -> MaskInfo:
    """Mask the `num_masked` highest-scoring tokens of each row. scores: (B, T) float."""
    B, T = scores.shape
    ids_shuffle = torch.argsort(scores, dim=1)  # ascending: kept tokens first
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    keep = T - num_masked
    mask = ids_restore >= keep
    return MaskInfo(mask=mask, ids_keep=ids_shuffle[:, :keep], ids_restore=ids_restore)


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


def span_mask(lengths: Tensor, T: int, cfg: SpanMaskConfig, generator: torch.Generator) -> MaskInfo:
    """wav2vec 2.0 span masking of speech frames (fairseq compute_mask_indices, static lengths,
    overlaps allowed), vectorized over the batch.

    lengths: (B,) valid frames per sample; positions >= length are padding and never masked.
    Each sample draws num_spans = max(min_spans, int(prob * L / length + u)), u ~ U[0, 1)
    (probabilistic rounding), distinct starts uniform over [0, L - length] (fairseq samples them
    without replacement), and masks `length` frames from each; spans may overlap, so prob 0.65 /
    length 10 masks ~49% of the frames (paper), not 65%. Spans fit inside the valid frames; a
    sample shorter than `length` has no room for one and is left unmasked, and num_spans is
    capped by the number of possible starts. Returns mask (B, T) with ids_keep / ids_restore None.
    """
    g = generator
    dev = g.device
    B = lengths.shape[0]
    L = lengths.to(dev).long().clamp(0, T)  # (B,)
    n_starts = (L - cfg.length + 1).clamp(min=0)  # valid starts: [0, L - length]
    u = torch.rand(B, generator=g, device=dev)
    num = torch.floor(cfg.prob * L / cfg.length + u).long().clamp(min=cfg.min_spans)
    num = torch.minimum(num, n_starts)

    pos = torch.arange(T, device=dev)
    scores = torch.rand(B, T, generator=g, device=dev).masked_fill(pos >= n_starts[:, None], 2.0)
    starts = scores.argsort(1).argsort(1) < num[:, None]  # (B, T) the num lowest valid scores
    # frame t is masked when a span starts in (t - length, t]
    c = torch.nn.functional.pad(starts.long().cumsum(1), (cfg.length, 0))  # (B, length + T)
    mask = (c[:, cfg.length :] - c[:, :T]) > 0
    return MaskInfo(mask=mask.to(lengths.device))


def token_mask(
    tokens: Tensor,
    special: Tensor,
    cfg: TokenMaskConfig,
    mask_id: int,
    vocab_size: int,
    num_special: int,
    generator: torch.Generator,
) -> MaskInfo:
    """BERT masking of text tokens (data2vec text), vectorized over the batch.

    tokens: (B, T) long; special: (B, T) bool, True where a token must never be selected
    (padding, <s>, </s>). With n maskable tokens, a sample selects k = int(prob * n / span + u)
    spans, u ~ U[0, 1) (fairseq's probabilistic rounding), at least one when n > 0. span = 1 is
    BERT: exactly k tokens, uniformly. span > 1 (data2vec's span option) places the k spans of
    `span` tokens without overlap, uniformly over the maskable tokens (k of the n - k(span - 1)
    "slots", each shifted by the spans before it), so they cover k * span ~ prob * n tokens.
    Departure from fairseq, whose overlapping span starts cover less (~31% for 0.35 / 4).
    Spans run over the maskable tokens only, never over a special one; a sample with fewer
    than `span` maskable tokens gets one span of all of them.

    Of the selected tokens (each independently, as fairseq): mask_frac become mask_id,
    random_frac a random id uniform in [num_special, vocab_size), the rest stay as they were.
    Returns mask (B, T) True = selected (all are regressed) and corrupt (B, T), the student's ids.
    """
    if cfg.random_frac > 0 and not 0 <= num_special < vocab_size:
        raise ValueError(f"random tokens need 0 <= num_special={num_special} < {vocab_size=}")
    g = generator
    dev = g.device
    B, T = tokens.shape
    maskable = ~special.to(dev)
    n = maskable.sum(1)  # (B,)
    s = n.clamp(min=1, max=cfg.span)  # span length; shorter than cfg.span only when n < span
    u = torch.rand(B, generator=g, device=dev)
    k = torch.floor(cfg.prob * n / cfg.span + u).long()
    k = torch.minimum(torch.maximum(k, (n > 0).long()), n // s)

    # Work in compact coordinates c = rank among the sample's maskable tokens.
    c = torch.arange(T, device=dev)
    slots = n - k * (s - 1)  # k spans of s without overlap <=> k distinct slots of n - k(s-1)
    scores = torch.rand(B, T, generator=g, device=dev).masked_fill(c >= slots[:, None], 2.0)
    chosen = scores.argsort(1).argsort(1) < k[:, None]  # (B, T) chosen slots
    start = c + (chosen.long().cumsum(1) - 1) * (s[:, None] - 1)  # shift by the spans before
    starts = torch.zeros(B, T, dtype=torch.long, device=dev)
    starts.scatter_add_(1, torch.where(chosen, start, 0), chosen.long())
    cs = starts.cumsum(1)
    back = c - s[:, None]  # compact c is covered when a span starts in (c - s, c]
    before = torch.where(back >= 0, cs.gather(1, back.clamp(min=0)), 0)
    covered = (cs - before) > 0  # (B, T) in compact coordinates
    rank = maskable.long().cumsum(1) - 1
    selected = maskable & covered.gather(1, rank.clamp(min=0))  # back to token positions

    v = torch.rand(B, T, generator=g, device=dev)
    to_mask = selected & (v < cfg.mask_frac)
    to_rand = selected & (v >= cfg.mask_frac) & (v < cfg.mask_frac + cfg.random_frac)
    rnd = torch.randint(max(num_special, 0), vocab_size, (B, T), generator=g, device=dev)
    orig = tokens.to(dev)
    corrupt = torch.where(to_mask, mask_id, torch.where(to_rand, rnd, orig))
    return MaskInfo(mask=selected.to(tokens.device), corrupt=corrupt.to(tokens.device))


# --- data2vec 2.0: the same mask count in every row ---------------------------------------------


def fixed_count_mask(
    mask: Tensor, generator: torch.Generator, count: int | None = None, copies: int = 1
) -> MaskInfo:
    """Each row keeps `count` of its masked tokens (default: the smallest row's count), chosen
    uniformly, and unmasks the rest (fairseq `require_same_masks`). mask: (B, T) bool."""
    n = int(mask.sum(1).min()) if count is None else count
    scores = mask.float() * 2 + torch.rand(mask.shape, generator=generator)
    info = mask_from_scores(scores, n)  # the n highest are all masked ones
    info.copies = copies
    return info


def inverse_block_mask(
    batch: int, grid: tuple[int, int], cfg: InverseBlockMaskConfig, generator: torch.Generator
) -> MaskInfo:
    """data2vec 2.0 inverse block masking on an (h, w) patch grid, vectorized over the batch.

    Blocks of `cfg.block` x `cfg.block` *kept* patches are grown around
    int(T * (1 - ratio + adjust) / block^2) centres drawn uniformly (with replacement; blocks are
    clipped at the border, fairseq compute_block_mask_2d), the kept count is then made exactly
    K = round((1 - ratio) * T) by dropping or adding random patches, and every other patch is
    masked: each row masks exactly T - K patches, mostly in large connected regions.
    """
    h, w = grid
    T = h * w
    keep = round((1 - cfg.ratio) * T)
    b = cfg.block
    n_centres = max(1, int(T * ((1 - cfg.ratio) + cfg.adjust) / b**2))
    g = generator
    centres = torch.randint(0, T, (batch, n_centres), generator=g)
    seeds = torch.zeros(batch, T).scatter_(1, centres, 1.0).view(batch, 1, h, w)
    # patch p is kept when a centre c has c - b//2 <= p <= c - b//2 + b - 1 (per axis)
    left, right = b - 1 - b // 2, b // 2
    grown = F.max_pool2d(F.pad(seeds, (left, right, left, right)), kernel_size=b, stride=1)
    kept = grown.view(batch, T) > 0
    scores = (~kept).float() * 2 + torch.rand(batch, T, generator=g)  # kept blocks score lowest
    return mask_from_scores(scores, T - keep)


def fixed_span_mask(
    lengths: Tensor, T: int, cfg: SpanMaskConfig, generator: torch.Generator, copies: int = 1
) -> MaskInfo:
    """data2vec 2.0 audio: span masks (as `span_mask`) cut to the same count in every row.

    lengths: (B,) valid frames of each row (B rows; repeat a sample's length for its copies).
    Returns mask, ids_keep, ids_restore; padding frames are never masked and sit among the kept.
    """
    spans = span_mask(lengths, T, cfg, generator).mask
    return fixed_count_mask(spans, generator, copies=copies)


def fixed_token_mask(
    special: Tensor, prob: float, generator: torch.Generator, copies: int = 1
) -> MaskInfo:
    """data2vec 2.0 text: k = round(prob * n) tokens masked in every row, uniformly among the
    maskable ones, n the fewest maskable tokens of any row (at least one when n > 0).

    special: (B, T) bool, True where a token must never be masked (padding, <s>, </s>).
    """
    n = int((~special).sum(1).min())
    k = min(n, max(1, round(prob * n))) if n > 0 else 0
    scores = torch.rand(special.shape, generator=generator).masked_fill(special, -1.0)
    info = mask_from_scores(scores, k)
    info.copies = copies
    return info

"""Multi-head self-attention, with the query / key / value projections fused (the generic
encoder) or separate (the paper's encoders, named as HF's Data2Vec models name them).

Dimensions: B batch, T tokens, D width, H heads. Padding masks: True = padding (never attended
to).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    padding_mask: Tensor | None,
    dropout: float,
    bias: Tensor | None = None,
) -> Tensor:
    """q, k, v: (B, H, T, D/H) -> (B, T, D), scaled dot-product attention over the keys that are
    not padding; bias: (1 or B, H, T, T) added to the scores (BEiT's relative positions)."""
    B, H, T, Dh = q.shape
    attn_mask = None if padding_mask is None else ~padding_mask[:, None, None, :]
    if bias is not None:
        attn_mask = bias if attn_mask is None else bias.masked_fill(~attn_mask, float("-inf"))
    if q.dtype == torch.bfloat16 and q.device.type == "cpu":
        # the CPU's bf16 attention kernels are 3-5x slower than fp32 ones (backward) at these
        # sizes; the scores are small, so compute them in fp32 (measured, bench)
        with torch.autocast("cpu", enabled=False):
            y = F.scaled_dot_product_attention(
                q.float(),
                k.float(),
                v.float(),
                attn_mask=_as(attn_mask, torch.float32),
                dropout_p=dropout,
            ).to(q.dtype)
    else:
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=_as(attn_mask, q.dtype), dropout_p=dropout
        )
    return y.transpose(1, 2).reshape(B, T, H * Dh)


def _as(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    """A boolean mask as it is; an additive one in the scores' dtype."""
    return mask if mask is None or mask.dtype == torch.bool else mask.to(dtype)


class Attention(nn.Module):
    """Fused q/k/v projection (ViT, timm)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        bias: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> Tensor:
        """x: (B, T, D), padding_mask: (B, T) True = padding -> (B, T, D). No relative
        positions here: `bias` and `keep` are for SeparateAttention's signature."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = attend(q, k, v, padding_mask, self.dropout if self.training else 0.0, bias)
        return self.proj(y)


class SeparateAttention(nn.Module):
    """Separate q, k, v projections (BERT / RoBERTa, wav2vec 2.0, BEiT: BEiT's key has no
    bias, and each layer may have its own relative position bias)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float,
        key_bias: bool = True,
        rel_pos: nn.Module | None = None,
    ):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim, bias=key_bias)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos = rel_pos
        self.dropout = dropout

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        bias: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> Tensor:
        """x: (B, T, D), padding_mask: (B, T) True = padding -> (B, T, D). bias: a shared
        relative position bias (B or 1, H, T, T); keep: (B, T) the token each row holds, for
        this layer's own relative position bias (None: all, in order)."""
        B, T, D = x.shape
        if self.rel_pos is not None:
            own = self.rel_pos(keep)
            bias = own if bias is None else bias + own

        def heads(y: Tensor) -> Tensor:  # (B, T, D) -> (B, H, T, D/H)
            return y.view(B, T, self.heads, D // self.heads).transpose(1, 2)

        y = attend(
            heads(self.q(x)),
            heads(self.k(x)),
            heads(self.v(x)),
            padding_mask,
            self.dropout if self.training else 0.0,
            bias,
        )
        return self.proj(y)

"""Multi-head self-attention, with the query / key / value projections fused (the generic
encoder) or separate (the paper's encoders, named as HF's Data2Vec models name them).

Dimensions: B batch, T tokens, D width, H heads. Padding masks: True = padding (never attended
to).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def attend(q: Tensor, k: Tensor, v: Tensor, padding_mask: Tensor | None, dropout: float) -> Tensor:
    """q, k, v: (B, H, T, D/H) -> (B, T, D), scaled dot-product attention over the keys that are
    not padding."""
    B, H, T, Dh = q.shape
    attn_mask = None if padding_mask is None else ~padding_mask[:, None, None, :]
    if q.dtype == torch.bfloat16 and q.device.type == "cpu":
        # the CPU's bf16 attention kernels are 3-5x slower than fp32 ones (backward) at these
        # sizes; the scores are small, so compute them in fp32 (measured, bench)
        with torch.autocast("cpu", enabled=False):
            y = F.scaled_dot_product_attention(
                q.float(), k.float(), v.float(), attn_mask=attn_mask, dropout_p=dropout
            ).to(q.dtype)
    else:
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)
    return y.transpose(1, 2).reshape(B, T, H * Dh)


class Attention(nn.Module):
    """Fused q/k/v projection (ViT, timm)."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x: (B, T, D), padding_mask: (B, T) True = padding -> (B, T, D)."""
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        y = attend(q, k, v, padding_mask, self.dropout if self.training else 0.0)
        return self.proj(y)


class SeparateAttention(nn.Module):
    """Separate q, k, v projections (BERT / RoBERTa, wav2vec 2.0, BEiT: BEiT's key has no
    bias)."""

    def __init__(self, dim: int, heads: int, dropout: float, key_bias: bool = True):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(dim, dim, bias=key_bias)
        self.v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.dropout = dropout

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> Tensor:
        """x: (B, T, D), padding_mask: (B, T) True = padding -> (B, T, D)."""
        B, T, D = x.shape

        def heads(y: Tensor) -> Tensor:  # (B, T, D) -> (B, H, T, D/H)
            return y.view(B, T, self.heads, D // self.heads).transpose(1, 2)

        y = attend(
            heads(self.q(x)),
            heads(self.k(x)),
            heads(self.v(x)),
            padding_mask,
            self.dropout if self.training else 0.0,
        )
        return self.proj(y)

"""Transformer encoder whose blocks expose, per layer, the four places data2vec can read targets
from (paper Table 5): the self-attention output, the FFN output before the last residual, the FFN
output plus that residual, and the block's end.

Dimensions: B batch, T tokens, D model width, H heads.
Padding masks: True = padding (ignored by attention).
Module outputs are NamedTuples: structured, and traversable by DeepSpeed ZeRO-3's hooks (which
do not look inside dataclasses).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d2v.config import ModelConfig, Sublayer


class BlockOutput(NamedTuple):
    attn: Tensor  # (B, T, D) self-attention output, before its residual
    ffn: Tensor  # (B, T, D) FFN output, before the last residual (paper Table 5)
    out: Tensor  # (B, T, D) the block's output: the residual stream after the FFN's residual

    def get(self, sublayer: Sublayer) -> Tensor:
        """The paper's blocks are post-norm (wav2vec 2.0, BERT): FFN + residual, then a layer
        norm ends the block. Ours are pre-norm, so `block` is the residual stream layer-normed
        (no affine), the same normalization a post-norm block ends with."""
        if sublayer == Sublayer.ffn_res:
            return self.out
        if sublayer == Sublayer.block:
            return F.layer_norm(self.out, self.out.shape[-1:])
        return getattr(self, sublayer.value)


class EncoderOutput(NamedTuple):
    last: Tensor  # (B, T, D) final output, after the final layer norm
    layers: list[Tensor]  # per block, the collected sublayer (B, T, D); empty if none asked for
    padding_mask: Tensor | None = None  # (B, T) True = padding


class Attention(nn.Module):
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
        attn_mask = None if padding_mask is None else ~padding_mask[:, None, None, :]
        drop = self.dropout if self.training else 0.0
        if q.dtype == torch.bfloat16 and q.device.type == "cpu":
            # the CPU's bf16 attention kernels are 3-5x slower than fp32 ones (backward) at
            # these sizes; the scores are small, so compute them in fp32 (measured, bench)
            with torch.autocast("cpu", enabled=False):
                y = F.scaled_dot_product_attention(
                    q.float(), k.float(), v.float(), attn_mask=attn_mask, dropout_p=drop
                ).to(q.dtype)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=drop)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm Transformer block (ViT / data2vec 2.0 style)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim)
        self.attn = Attention(cfg.dim, cfg.heads, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.dim)
        self.mlp = MLP(cfg.dim, int(cfg.dim * cfg.mlp_ratio), cfg.dropout)

    def forward(self, x: Tensor, padding_mask: Tensor | None = None) -> BlockOutput:
        a = self.attn(self.norm1(x), padding_mask)
        x = x + a
        f = self.mlp(self.norm2(x))
        return BlockOutput(attn=a, ffn=f, out=x + f)


class Backbone(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        self.apply(_init_weights)

    def forward(
        self, x: Tensor, padding_mask: Tensor | None = None, collect: Sublayer | None = None
    ) -> EncoderOutput:
        """x: (B, T, D) -> final output and, if `collect` is set, that sublayer of every block."""
        layers = []
        for block in self.blocks:
            out = block(x, padding_mask)
            x = out.out
            if collect is not None:
                layers.append(out.get(collect))
        return EncoderOutput(last=self.norm(x), layers=layers, padding_mask=padding_mask)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)

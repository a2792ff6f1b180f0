"""Transformer blocks, pre-norm (ViT, BEiT, data2vec 2.0) or post-norm (BERT / RoBERTa,
wav2vec 2.0 Base), each exposing the four places data2vec can read its targets from (paper
Table 5): the self-attention output, the FFN output before the last residual, the FFN output
plus that residual, and the block's end.

Dimensions: B batch, T tokens, D width. Padding masks: True = padding.
Module outputs are NamedTuples: structured, and traversable by DeepSpeed ZeRO-3's hooks (which
do not look inside dataclasses).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d2v.architecture import Layout, Norm, Qkv
from d2v.attention import Attention, SeparateAttention
from d2v.config import ModelConfig, Sublayer


class BlockOutput(NamedTuple):
    attn: Tensor  # (B, T, D) self-attention output, before its residual
    ffn: Tensor  # (B, T, D) FFN output, before the last residual (paper Table 5)
    res: Tensor  # (B, T, D) the FFN output plus the last residual, before any post-norm
    out: Tensor  # (B, T, D) the block's output


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(F.gelu(self.fc1(x))))


def _attention(cfg: ModelConfig, layout: Layout, rel_pos: nn.Module | None) -> nn.Module:
    if layout.qkv == Qkv.fused:
        return Attention(cfg.dim, cfg.heads, cfg.dropout)
    return SeparateAttention(cfg.dim, cfg.heads, cfg.dropout, layout.key_bias, rel_pos)


class Block(nn.Module):
    """Pre-norm: x + attn(LN(x)), then + FFN(LN(.)); BEiT scales each branch per channel."""

    def __init__(self, cfg: ModelConfig, layout: Layout, rel_pos: nn.Module | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.attn = _attention(cfg, layout, rel_pos)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = MLP(cfg.dim, int(cfg.dim * cfg.mlp_ratio), cfg.dropout)
        self.scale1 = self.scale2 = None
        if layout.layer_scale is not None:
            self.scale1 = nn.Parameter(torch.full((cfg.dim,), layout.layer_scale))
            self.scale2 = nn.Parameter(torch.full((cfg.dim,), layout.layer_scale))

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        bias: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> BlockOutput:
        a = self.attn(self.norm1(x), padding_mask, bias, keep)
        if self.scale1 is not None:
            a = self.scale1 * a
        x = x + a
        f = self.mlp(self.norm2(x))
        if self.scale2 is not None:
            f = self.scale2 * f
        return BlockOutput(attn=a, ffn=f, res=x + f, out=x + f)

    def read(self, out: BlockOutput, sublayer: Sublayer) -> Tensor:
        """The paper's blocks are post-norm: FFN + residual, then a layer norm ends the block.
        Here `block` is the residual stream layer-normed (no affine), the same normalization
        a post-norm block ends with."""
        if sublayer == Sublayer.block:
            return F.layer_norm(out.out, out.out.shape[-1:])
        return _read(out, sublayer)


class PostNormBlock(nn.Module):
    """Post-norm: LN(x + attn(x)), then LN(. + FFN(.)) (BERT, RoBERTa, wav2vec 2.0 Base)."""

    def __init__(self, cfg: ModelConfig, layout: Layout, rel_pos: nn.Module | None = None):
        super().__init__()
        self.attn = _attention(cfg, layout, rel_pos)
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.mlp = MLP(cfg.dim, int(cfg.dim * cfg.mlp_ratio), cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        bias: Tensor | None = None,
        keep: Tensor | None = None,
    ) -> BlockOutput:
        a = self.drop(self.attn(x, padding_mask, bias, keep))
        x = self.norm1(x + a)
        f = self.mlp(x)
        r = x + f
        return BlockOutput(attn=a, ffn=f, res=r, out=self.norm2(r))

    def read(self, out: BlockOutput, sublayer: Sublayer) -> Tensor:
        """The block ends with its own layer norm: `block` is its output."""
        return _read(out, sublayer)


def _read(out: BlockOutput, sublayer: Sublayer) -> Tensor:
    return {
        Sublayer.attn: out.attn,
        Sublayer.ffn: out.ffn,
        Sublayer.ffn_res: out.res,
        Sublayer.block: out.out,
    }[sublayer]


def block(cfg: ModelConfig, layout: Layout, rel_pos: nn.Module | None = None) -> nn.Module:
    if layout.norm == Norm.post:
        return PostNormBlock(cfg, layout, rel_pos)
    return Block(cfg, layout, rel_pos)

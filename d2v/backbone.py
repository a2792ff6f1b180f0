"""Transformer encoder whose blocks (d2v.blocks) expose, per layer, the four places data2vec can
read targets from (paper Table 5); its layout (pre/post-norm, q/k/v, layer scale, final norm) is
the generic one or the paper's for a modality (d2v.architecture).

Dimensions: B batch, T tokens, D model width.
Padding masks: True = padding (ignored by attention).
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from d2v.architecture import GENERIC, Layout
from d2v.blocks import block
from d2v.config import ModelConfig, Sublayer
from d2v.relpos import RelativePositionBias


class EncoderOutput(NamedTuple):
    last: Tensor  # (B, T, D) final output, after the final layer norm if the layout has one
    layers: list[Tensor]  # per block, the collected sublayer (B, T, D); empty if none asked for
    padding_mask: Tensor | None = None  # (B, T) True = padding
    cls: Tensor | None = None  # (B, 1, D) the CLS token's final output (BEiT), kept out of `last`


class Backbone(nn.Module):
    """rel_pos (BEiT, on a `grid` of patches with a CLS token first): none, one relative
    position bias per block (`layer`), or one all blocks share (`shared`)."""

    def __init__(
        self,
        cfg: ModelConfig,
        layout: Layout = GENERIC,
        rel_pos: str = "none",
        grid: tuple[int, int] | None = None,
    ):
        super().__init__()

        def own_bias() -> nn.Module | None:
            return RelativePositionBias(grid, cfg.heads) if rel_pos == "layer" else None

        self.blocks = nn.ModuleList(block(cfg, layout, own_bias()) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.norm_eps) if layout.final_norm else nn.Identity()
        self.rel_pos = RelativePositionBias(grid, cfg.heads) if rel_pos == "shared" else None
        self.apply(_init_weights)

    def forward(
        self,
        x: Tensor,
        padding_mask: Tensor | None = None,
        collect: Sublayer | None = None,
        keep: Tensor | None = None,
    ) -> EncoderOutput:
        """x: (B, T, D) -> final output and, if `collect` is set, that sublayer of every block.
        keep: (B, T) which token of the full sequence each row holds (relative positions of a
        data2vec 2.0 student's visible tokens); None: all, in order."""
        layers = []
        bias = None if self.rel_pos is None else self.rel_pos(keep)
        for blk in self.blocks:
            out = blk(x, padding_mask, bias, keep)
            x = out.out
            if collect is not None:
                layers.append(blk.read(out, collect))
        return EncoderOutput(last=self.norm(x), layers=layers, padding_mask=padding_mask)


def _init_weights(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)

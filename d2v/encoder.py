"""A modality's encoder: its frontend (features, positions, mask embedding) then the shared
Transformer backbone. The same class serves student and teacher."""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor, nn

from d2v.backbone import Backbone, EncoderOutput
from d2v.config import ModelConfig, Sublayer
from d2v.masking import MaskInfo


class Tokens(NamedTuple):
    x: Tensor  # (B, T, D) embedded input, masked positions replaced, positions added
    padding_mask: Tensor | None = None  # (B, T) True = padding


class Frontend(nn.Module):
    """Turns a modality's raw input into tokens; subclasses own their mask embedding."""

    dim: int

    def forward(self, source: Tensor, mask: MaskInfo | None = None) -> Tokens:
        raise NotImplementedError


class Encoder(nn.Module):
    def __init__(self, frontend: Frontend, cfg: ModelConfig):
        super().__init__()
        self.frontend = frontend
        self.backbone = Backbone(cfg)
        self.dim = cfg.dim
        self.depth = cfg.depth

    def forward(
        self, source: Tensor, mask: MaskInfo | None = None, collect: Sublayer | None = None
    ) -> EncoderOutput:
        tokens = self.frontend(source, mask)
        return self.backbone(tokens.x, tokens.padding_mask, collect)

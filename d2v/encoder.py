"""A modality's encoder: its frontend (features, positions, mask embedding) then the shared
Transformer backbone. The same class serves student and teacher, and both methods: data2vec's
student sees every token with the masked ones replaced (`visible_only=False`); data2vec 2.0's sees
only the visible tokens of each masked copy (`visible_only=True`).

Dimensions: B samples, R = B * copies mask rows, T tokens, K visible tokens, D width."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from d2v.architecture import GENERIC, Layout
from d2v.backbone import Backbone, EncoderOutput
from d2v.config import ModelConfig, Sublayer
from d2v.masking import MaskInfo


class Tokens(NamedTuple):
    x: Tensor  # (B, T, D) embedded input, masked positions replaced, positions added
    padding_mask: Tensor | None = None  # (B, T) True = padding
    keep: Tensor | None = None  # (R, K) which token of the full sequence each row holds
    prefix: int = 0  # leading tokens that are no input position (BEiT's CLS)


def gather_visible(x: Tensor, mask: MaskInfo) -> Tensor:
    """x: (B, T, ...) per sample, or (R, T, ...) per mask row -> (R, K, ...) the visible tokens
    of every mask row."""
    R = mask.mask.shape[0]
    rows = torch.arange(R, device=x.device) if x.shape[0] == R else mask.sample_of_row
    return x[rows[:, None], mask.ids_keep]


class Frontend(nn.Module):
    """Turns a modality's raw input into tokens; subclasses own their mask embedding.

    visible_only: return only the visible tokens of each mask row, (R, K, D), positions included
    (data2vec 2.0); else all tokens (B, T, D) with the masked ones replaced (data2vec).
    """

    dim: int

    def forward(
        self, source: Tensor, mask: MaskInfo | None = None, visible_only: bool = False
    ) -> Tokens:
        raise NotImplementedError

    def from_tensor(self, x: Tensor) -> Any:
        """A plain batch tensor (unpadded) as this frontend's input; audio wraps its lengths."""
        return x


class Encoder(nn.Module):
    def __init__(
        self, frontend: Frontend, cfg: ModelConfig, layout: Layout = GENERIC, rel_pos: str = "none"
    ):
        super().__init__()
        self.frontend = frontend
        self.backbone = Backbone(cfg, layout, rel_pos, getattr(frontend, "grid", None))
        self.dim = cfg.dim
        self.depth = cfg.depth

    def forward(
        self,
        source: Tensor,
        mask: MaskInfo | None = None,
        collect: Sublayer | None = None,
        visible_only: bool = False,
    ) -> EncoderOutput:
        tokens = self.frontend(source, mask, visible_only)
        out = self.backbone(tokens.x, tokens.padding_mask, collect, tokens.keep)
        return split_prefix(out, tokens.prefix) if tokens.prefix else out


def split_prefix(out: EncoderOutput, p: int) -> EncoderOutput:
    """The outputs at the input's positions, the CLS token's (the first `p`) apart: what the
    data2vec core, decoders and heads read is per input position."""
    return EncoderOutput(
        last=out.last[:, p:],
        layers=[layer[:, p:] for layer in out.layers],
        padding_mask=None if out.padding_mask is None else out.padding_mask[:, p:],
        cls=out.last[:, :p],
    )


class EncoderFeatures(nn.Module):
    """An encoder as a feature extractor: source -> (B, T, D) last-layer features, what the
    downstream heads pool. The form the pretrained encoder is logged in as an MLflow model,
    whose `predict` takes and returns one array."""

    def __init__(self, encoder: Encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, source: Tensor) -> Tensor:
        if isinstance(source, Tensor):
            source = self.encoder.frontend.from_tensor(source)
        return self.encoder(source).last


def fold_parametrizations(module: nn.Module) -> nn.Module:
    """Fold parametrizations (speech's conv positions carry weight norm) into plain weights, in
    place, and return the module: the outputs stay the same, and torch can pickle it (it refuses
    to pickle a parametrized module), as an MLflow model needs. For a copy built to be logged:
    a deep copy would share the parametrized class, and folding it would break the original."""
    from torch.nn.utils import parametrize

    for m in list(module.modules()):
        for name in list(getattr(m, "parametrizations", {})):
            parametrize.remove_parametrizations(m, name, leave_parametrized=True)
    return module

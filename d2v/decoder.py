"""data2vec 2.0's light convolutional decoder: it takes the student's outputs at the visible tokens,
re-inserts the masked slots as small noise in their original order, and predicts the teacher's
targets with a few conv blocks (1-D over time for audio and text, 2-D over the patch grid for
images) and a linear projection back to the encoder width.

Dimensions: R rows (samples x copies), K visible tokens, T all tokens, D encoder width,
C decoder width, h x w the patch grid (T = h w). Padding masks: True = padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d2v.channels_last import conv_tokens
from d2v.config import DecoderConfig
from d2v.masking import MaskInfo


def restore_sequence(
    visible: Tensor, mask: MaskInfo, noise_std: float, padding: Tensor | None = None
) -> Tensor:
    """visible: (R, K, D) outputs at `mask.ids_keep` -> (R, T, D) in token order, the masked slots
    filled with N(0, noise_std) noise and padding slots zeroed (never content for the decoder)."""
    R, K, D = visible.shape
    T = mask.ids_restore.shape[1]
    noise = visible.new_empty(R, T - K, D).normal_(0.0, noise_std)
    x = torch.cat([visible, noise], dim=1)  # [visible..., masked...]
    x = x.gather(1, mask.ids_restore[..., None].expand(R, T, D))
    if padding is not None:
        x = x.masked_fill(padding[..., None], 0.0)
    return x


def restore_padding(visible: Tensor, mask: MaskInfo) -> Tensor:
    """visible: (R, K) padding flags of the visible slots -> (R, T) in token order (masked slots
    are never padding)."""
    R, K = visible.shape
    full = torch.cat([visible, visible.new_zeros(R, mask.ids_restore.shape[1] - K)], dim=1)
    return full.gather(1, mask.ids_restore)


class ConvBlock(nn.Module):
    """conv (same length) -> LayerNorm over channels without affine -> GELU."""

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int, dims: int):
        super().__init__()
        conv = nn.Conv1d if dims == 1 else nn.Conv2d
        self.conv = conv(c_in, c_out, kernel, padding=kernel // 2, groups=groups)
        self.trim = 1 - kernel % 2  # an even kernel gives one extra output per axis
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        """x: (R, *spatial, C_in) -> (R, *spatial, C_out), channels last."""
        y = conv_tokens(self.conv, x)
        if self.trim:
            y = y[:, :-1] if self.dims == 1 else y[:, :-1, :-1]
        return F.gelu(F.layer_norm(y, y.shape[-1:]))


class ConvDecoder(nn.Module):
    """`grid` None: a 1-D decoder over the sequence; (h, w): a 2-D decoder over the patch grid."""

    def __init__(self, cfg: DecoderConfig, dim: int, grid: tuple[int, int] | None = None):
        super().__init__()
        self.grid = grid
        dims = 1 if grid is None else 2
        widths = [dim] + [cfg.dim] * cfg.layers
        self.blocks = nn.ModuleList(
            ConvBlock(widths[i], widths[i + 1], cfg.kernel, cfg.groups, dims)
            for i in range(cfg.layers)
        )
        self.residual = cfg.residual
        self.noise_std = cfg.noise_std
        self.input_dropout = nn.Dropout(cfg.input_dropout)
        if cfg.projection_layers == 2:  # data2vec 2.0 text: Linear(C, 2C) -> GELU -> Linear
            self.proj = nn.Sequential(
                nn.Linear(cfg.dim, 2 * cfg.dim), nn.GELU(), nn.Linear(2 * cfg.dim, dim)
            )
        else:
            self.proj = nn.Linear(cfg.dim, dim)

    def forward(self, visible: Tensor, mask: MaskInfo, padding: Tensor | None = None) -> Tensor:
        """visible: (R, K, D) student outputs -> predictions for every token (R, T, D)."""
        x = restore_sequence(self.input_dropout(visible), mask, self.noise_std, padding)
        R, T, D = x.shape
        if self.grid is not None:
            x = x.reshape(R, *self.grid, D)  # (R, h, w, D), token t at (t // w, t % w)
        for block in self.blocks:
            y = block(x)
            x = x + y if self.residual and y.shape == x.shape else y
        return self.proj(x.reshape(R, T, x.shape[-1]))

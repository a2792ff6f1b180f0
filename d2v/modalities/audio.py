"""Speech frontend (wav2vec 2.0): a 1-D convolutional feature encoder on the raw 16 kHz waveform,
feature projection, learned mask embedding, convolutional positional encoding.

Dimensions: B batch, S waveform samples, C conv channels, T frames (50 Hz at the paper's
strides), D model width. Padding masks: True = padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d2v.channels_last import conv_tokens
from d2v.encoder import Frontend, Tokens, gather_visible
from d2v.masking import MaskInfo


class Audio(NamedTuple):
    """A batch of zero-padded waveforms; a NamedTuple so it moves like a tensor."""

    wave: Tensor  # (B, S) float32, per-utterance normalized
    lengths: Tensor  # (B,) int64 valid samples

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Audio:
        return Audio(
            self.wave.to(device, non_blocking=non_blocking),
            self.lengths.to(device, non_blocking=non_blocking),
        )


def frame_lengths(samples: Tensor, kernels: Sequence[int], strides: Sequence[int]) -> Tensor:
    """Valid output frames of the conv stack for `samples` valid input samples (any shape):
    per layer floor((L - k) / s) + 1, as the convolutions compute it (no padding)."""
    n = samples.long()
    for k, s in zip(kernels, strides, strict=True):
        n = torch.div(n - k, s, rounding_mode="floor") + 1
    return n.clamp(min=0)


class ConvLayer(nn.Module):
    """Conv1d -> LayerNorm over channels -> GELU (wav2vec 2.0 `layer_norm` extractor mode, as
    data2vec uses: it trains stably without the group norm of the Base `default` mode; the
    paper's convolutions have no bias)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, bias: bool = True, eps: float = 1e-5
    ):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride, bias=bias)
        self.norm = nn.LayerNorm(c_out, eps=eps)
        nn.init.kaiming_normal_(self.conv.weight)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C_in, S) -> (B, C_out, S')."""
        x = self.conv(x)
        return F.gelu(self.norm(x.transpose(1, 2)).transpose(1, 2))


class ConvFeatureEncoder(nn.Module):
    """7 layers at paper size: kernels (10, 3, 3, 3, 3, 2, 2), strides (5, 2, 2, 2, 2, 2, 2),
    512 channels: 16 kHz -> 50 Hz (a 400-sample receptive field, 320-sample hop)."""

    def __init__(
        self, channels: int, kernels: Sequence[int], strides: Sequence[int], bias: bool = True
    ):
        super().__init__()
        self.kernels, self.strides = tuple(kernels), tuple(strides)
        self.out_dim = channels
        widths = [1] + [channels] * len(kernels)
        self.layers = nn.Sequential(
            *(
                ConvLayer(widths[i], widths[i + 1], k, s, bias)
                for i, (k, s) in enumerate(zip(kernels, strides, strict=True))
            )
        )

    def frame_lengths(self, samples: Tensor) -> Tensor:
        return frame_lengths(samples, self.kernels, self.strides)

    def forward(self, wave: Tensor) -> Tensor:
        """wave: (B, S) -> features (B, T, C)."""
        return self.layers(wave.unsqueeze(1)).transpose(1, 2)


class ConvPositions(nn.Module):
    """wav2vec 2.0's convolutional relative positions: a wide grouped conv over time with
    weight norm and GELU, added to the input (an even kernel drops its last output frame)."""

    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        std = (4.0 / (kernel * dim)) ** 0.5
        nn.init.normal_(self.conv.weight, mean=0.0, std=std)
        nn.init.zeros_(self.conv.bias)
        self.conv = nn.utils.parametrizations.weight_norm(self.conv, name="weight", dim=2)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, D) -> positional term (B, T, D)."""
        y = conv_tokens(self.conv, x)
        if self.trim:
            y = y[:, : -self.trim]
        return F.gelu(y)


class StackedConvPositions(nn.Module):
    """data2vec's convolutional positions (HF's Data2VecAudioPositionalConvEmbedding): `layers`
    grouped convs over time, each followed by a layer norm without affine and GELU, one after
    the other; their output is added to the input (data2vec audio: 5 layers of kernel 19)."""

    def __init__(self, dim: int, kernel: int, groups: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(_PosConvLayer(dim, kernel, groups) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, D) -> positional term (B, T, D)."""
        for layer in self.layers:
            x = layer(x)
        return x


class _PosConvLayer(nn.Module):
    def __init__(self, dim: int, kernel: int, groups: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
        nn.init.kaiming_normal_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.trim = 1 if kernel % 2 == 0 else 0

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, D) -> (B, T, D)."""
        y = conv_tokens(self.conv, x)
        if self.trim:
            y = y[:, : -self.trim]
        return F.gelu(F.layer_norm(y, y.shape[-1:]))


class AudioFrontend(Frontend):
    """`features`: the waveform CNN (`ConvFeatureEncoder`) or log-mel filterbanks
    (`fbank.LogMelStack`), anything with `out_dim` and `frame_lengths(samples)` that maps
    (B, S) waveforms to (B, T, out_dim) frames. `pos_conv`: wav2vec 2.0's `ConvPositions`, or
    data2vec's `StackedConvPositions` (the paper's encoder); default the former."""

    def __init__(
        self,
        dim: int,
        features: nn.Module,
        pos_kernel: int,
        pos_groups: int,
        pos_conv: nn.Module | None = None,
        eps: float = 1e-5,
    ):
        super().__init__()
        self.dim = dim
        self.features = features
        self.feature_norm = nn.LayerNorm(features.out_dim, eps=eps)
        self.proj = nn.Linear(features.out_dim, dim)
        self.mask_emb = nn.Parameter(torch.empty(dim).uniform_())  # wav2vec 2.0's init
        self.pos_conv = (
            pos_conv if pos_conv is not None else ConvPositions(dim, pos_kernel, pos_groups)
        )
        self.norm = nn.LayerNorm(dim, eps=eps)

    def padding_mask(self, lengths: Tensor, frames: int) -> Tensor:
        """(B,) valid samples -> (B, T) True where a frame is padding."""
        n = self.features.frame_lengths(lengths)
        return torch.arange(frames, device=lengths.device)[None, :] >= n[:, None]

    def from_tensor(self, x: Tensor) -> Audio:
        """(B, S) waveforms of full length, no padding."""
        return Audio(x, torch.full((x.shape[0],), x.shape[1], dtype=torch.long, device=x.device))

    def forward(
        self, audio: Audio, mask: MaskInfo | None = None, visible_only: bool = False
    ) -> Tokens:
        """audio: (B, S) waveforms -> tokens (B, T, D), masked frames as the mask embedding; or,
        visible_only, the visible frames of each mask row (R, K, D) (data2vec 2.0: the CNN runs
        once per sample; each copy's conv positions see its masked frames as zeros)."""
        x = self.proj(self.feature_norm(self.features(audio.wave)))  # (B, T, D)
        padding = self.padding_mask(audio.lengths, x.shape[1])
        if visible_only:
            rows = mask.sample_of_row
            x, padding = x[rows], padding[rows]  # (R, T, D), (R, T)
            x = x.masked_fill((mask.mask | padding)[..., None], 0.0)
            x = self.norm(x + self.pos_conv(x))
            return Tokens(gather_visible(x, mask), gather_visible(padding, mask))
        if mask is not None:
            x = torch.where(mask.mask[..., None], self.mask_emb.to(x.dtype), x)
        x = x.masked_fill(padding[..., None], 0.0)
        x = self.norm(x + self.pos_conv(x))
        return Tokens(x, padding)

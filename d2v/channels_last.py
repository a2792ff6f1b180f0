"""Convolutions over tokens kept channels-last: (B, T, C) sequences and (B, h, w, C) grids.

A conv module wants (B, C, T). Handing it the transposed *view* of the tokens, and running a 1-D
conv as a 2-D one over (B, C, 1, T), lets oneDNN take its channels-last brgemm kernels for the
forward and input-gradient passes (ONEDNN_VERBOSE=1: `brg_conv_fwd:avx2`), where the plain
layout takes im2col + GEMM (`gemm:jit`), slow at 2-4 channels per group. For the grouped
convolutions of the small models (data2vec audio's conv positions, the 2.0 decoders) forward +
backward ran 1.6-3.7x faster on 2 CPU cores: 80 steps of speech pretraining (`micro`, `v2`) took
35 s instead of 46 s, 150 CTC fine-tuning steps 21 s instead of 26 s. The modules and their state
dicts stay as they are; only the order of the sums differs (float rounding, ~1e-5).

Dimensions: B batch, T tokens, h x w a patch grid, C channels.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


def conv_tokens(conv: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
    """`conv` applied to channels-last tokens: x (B, T, C_in) -> (B, T', C_out) for a Conv1d,
    x (B, h, w, C_in) -> (B, h', w', C_out) for a Conv2d; zero padding, as the module's own
    forward computes it up to float rounding."""
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(f"conv_tokens takes integer zero padding, not {conv.padding!r}")
    if isinstance(conv, nn.Conv2d):
        return conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    y = F.conv2d(
        x.transpose(1, 2).unsqueeze(2),  # (B, C_in, 1, T), channels-last strides
        conv.weight.unsqueeze(2),
        conv.bias,
        stride=(1, conv.stride[0]),
        padding=(0, conv.padding[0]),
        dilation=(1, conv.dilation[0]),
        groups=conv.groups,
    )
    return y.squeeze(2).transpose(1, 2)

"""The learnability diagnostic on targets of known structure: smooth signals are predicted by
interpolation (R² near 1) and by copying (high), white noise by neither (R² near 0 or below);
neighbours, copies and padding are handled exactly."""

from __future__ import annotations

import math

import torch

from d2v.config import InverseBlockMaskConfig, SpanMaskConfig
from d2v.learnability import autocorrelation, learnability, neighbours, trivial_predictions
from d2v.masking import inverse_block_mask, span_mask


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def smooth(B: int, T: int, D: int) -> torch.Tensor:
    """Slow sinusoids with random phases: (B, T, D)."""
    g = gen(0)
    t = torch.arange(T).float()[None, :, None]
    freq = 0.002 + 0.006 * torch.rand(1, 1, D, generator=g)  # periods of 125-500 steps
    phase = 2 * math.pi * torch.rand(B, 1, D, generator=g)
    return torch.sin(2 * math.pi * freq * t + phase)


def test_neighbours_are_the_nearest_visible_positions() -> None:
    visible = torch.tensor([[False, True, False, False, True, False]])
    nb = neighbours(visible)
    assert nb.before.tolist() == [[-1, 1, 1, 1, 4, 4]]
    assert nb.after.tolist() == [[1, 1, 4, 4, 4, 6]]


def test_interpolation_is_exact_on_a_linear_ramp() -> None:
    y = torch.arange(10.0)[None, :, None].repeat(1, 1, 2)
    visible = torch.tensor([[True, False, False, True, False, True, True, False, False, True]])
    copy, interp, ok = trivial_predictions(y, visible, None)
    assert ok.all()
    torch.testing.assert_close(interp, y)
    assert copy[0, 1, 0] == 0 and copy[0, 2, 0] == 3  # the nearer visible neighbour


def test_smooth_targets_are_predictable_and_noise_is_not() -> None:
    B, T, D = 8, 200, 16
    mask = span_mask(torch.full((B,), T), T, SpanMaskConfig(0.65, 10, 2), gen(1)).mask
    good = learnability(smooth(B, T, D), mask, copies=1, lag=10)
    assert good["interp_r2"] > 0.9 and good["copy_r2"] > 0.5
    assert good["target_autocorr"] > 0.5
    noise = torch.randn(B, T, D, generator=gen(2))
    bad = learnability(noise, mask, copies=1, lag=10)
    assert bad["interp_r2"] < 0.05 and bad["copy_r2"] < 0.05
    assert abs(bad["target_autocorr"]) < 0.05


def test_images_use_rows_and_columns_and_copies_share_targets() -> None:
    B, h, w, D = 4, 14, 14, 8
    gy, gx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    plane = (gy[None, ..., None] * 0.3 + gx[None, ..., None] * 0.1).expand(B, h, w, D)
    y = (plane + torch.randn(B, 1, 1, D, generator=gen(3))).reshape(B, h * w, D)
    m = inverse_block_mask(B * 3, (h, w), InverseBlockMaskConfig(ratio=0.6, block=3), gen(4))
    out = learnability(y, m.mask, copies=3, lag=3, grid=(h, w))
    assert out["interp_r2"] > 0.8 and out["copy_r2"] > 0.5


def test_padding_is_neither_visible_nor_scored() -> None:
    y = torch.arange(8.0)[None, :, None] * torch.tensor([1.0, 2.0])[:, None, None]  # (2, 8, 1)
    y[:, 6:] = 1000.0  # padding content must never leak into predictions
    padding = torch.zeros(2, 8, dtype=torch.bool)
    padding[:, 6:] = True
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, 5] = True
    out = learnability(y, mask, copies=1, lag=1, padding=padding)
    assert out["copy_r2"] > 0.5  # position 5 copies position 4, not the padding at 6
    assert autocorrelation(y, 1, padding) > 0.9

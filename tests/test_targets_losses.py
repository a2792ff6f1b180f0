"""Targets are normalized as configured; the loss is 0 at the target and positive elsewhere."""

from __future__ import annotations

import math

import pytest
import torch

from d2v.config import Modality, Norm, TargetConfig
from d2v.losses import feature_std, regression_loss
from d2v.targets import make_targets, normalize, resolve_top_k


def layers(n: int = 4, shape: tuple[int, int, int] = (3, 11, 16)) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(shape, generator=g) * (i + 1) + i for i in range(n)]


def test_layer_norm_per_time_step() -> None:
    y = normalize(layers(1)[0], Norm.layer)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 11), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(3, 11), atol=1e-3, rtol=0)


def test_instance_norm_over_time_per_channel_ignores_padding() -> None:
    x = layers(1)[0]
    pad = torch.zeros(3, 11, dtype=torch.bool)
    pad[0, 7:] = True
    x[0, 7:] = 1e6  # padding values must not leak into the statistics
    y = normalize(x, Norm.instance, pad)
    real = y[0, :7]
    torch.testing.assert_close(real.mean(0), torch.zeros(16), atol=1e-4, rtol=0)
    torch.testing.assert_close(real.var(0, unbiased=False), torch.ones(16), atol=1e-3, rtol=0)
    torch.testing.assert_close(y[1].mean(0), torch.zeros(16), atol=1e-4, rtol=0)


def test_targets_average_top_k_then_final_norm() -> None:
    ls = layers(4)
    cfg = TargetConfig(norm=Norm.layer, final_norm=Norm.none)
    y = make_targets(ls, cfg, top_k=2)
    expected = (normalize(ls[2], Norm.layer) + normalize(ls[3], Norm.layer)) / 2
    torch.testing.assert_close(y, expected)
    y = make_targets(ls, TargetConfig(norm=Norm.layer, final_norm=Norm.layer), top_k=3)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3, 11), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(3, 11), atol=1e-3, rtol=0)


def test_top_k_scaled_from_paper() -> None:
    assert resolve_top_k(None, Modality.vision, 12) == 6
    assert resolve_top_k(None, Modality.speech, 12) == 8
    assert resolve_top_k(None, Modality.text, 12) == 10
    assert resolve_top_k(None, Modality.vision, 4) == 2
    assert resolve_top_k(3, Modality.vision, 4) == 3


@pytest.mark.parametrize("beta", [0.0, 2.0, 4.0])
@pytest.mark.parametrize("scale", [True, False])
def test_loss_zero_at_target_positive_elsewhere(beta: float, scale: bool) -> None:
    t = torch.randn(10, 8)
    assert regression_loss(t.clone(), t, beta, scale).item() == 0.0
    assert regression_loss(t + 0.1, t, beta, scale).item() > 0.0


def test_loss_values_l2_and_smooth_l1_with_dim_scaling() -> None:
    pred, target = torch.full((2, 4), 3.0), torch.zeros(2, 4)
    # L2: per position sum 4 * 9 = 36, / sqrt(4)
    assert regression_loss(pred, target, 0.0, True).item() == pytest.approx(36 / 2)
    # smooth L1, beta 2, |d| = 3 >= beta: |d| - beta / 2 = 2 per element, sum 8
    assert regression_loss(pred, target, 2.0, False).item() == pytest.approx(8.0)
    assert regression_loss(pred, target, 2.0, True).item() == pytest.approx(8.0 / math.sqrt(4))


def test_feature_std_is_zero_for_collapsed_features() -> None:
    assert feature_std(torch.ones(20, 5) * 3).item() == 0.0
    assert feature_std(torch.randn(2000, 5)).item() == pytest.approx(1.0, abs=0.1)

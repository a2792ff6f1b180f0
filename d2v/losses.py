"""Regression loss on masked positions. N masked positions, D width."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor


def regression_loss(pred: Tensor, target: Tensor, beta: float, scale_by_dim: bool) -> Tensor:
    """pred, target: (N, D) -> scalar: per-position loss summed over D, mean over positions.

    beta = 0 is L2 (speech); beta > 0 is smooth L1 with that transition point (vision 2, text 4).
    scale_by_dim divides each position's sum by sqrt(D), as fairseq's data2vec does.
    """
    pred, target = pred.float(), target.float()
    if beta == 0:
        per_elem = F.mse_loss(pred, target, reduction="none")
    else:
        per_elem = F.smooth_l1_loss(pred, target, reduction="none", beta=beta)
    per_pos = per_elem.sum(-1)
    if scale_by_dim:
        per_pos = per_pos / math.sqrt(pred.shape[-1])
    return per_pos.mean()


def feature_std(x: Tensor) -> Tensor:
    """x: (N, D) -> scalar: std over the N positions per channel, averaged over channels.

    A collapsed representation (the same vector everywhere) has 0 here.
    """
    x = x.float()
    return x.std(0).mean() if x.shape[0] > 1 else x.new_zeros(())


def explained_variance(pred: Tensor, target: Tensor) -> Tensor:
    """pred, target: (N, D) -> scalar R^2: 1 - mean squared error / target variance (per channel
    over positions, averaged). 0: the student predicts the mean target (learns nothing, even when
    the teacher has not collapsed); 1: it predicts the targets exactly."""
    pred, target = pred.float(), target.float()
    if target.shape[0] < 2:
        return target.new_zeros(())
    err = (pred - target).pow(2).mean(0)
    return (1 - err / target.var(0, unbiased=False).clamp(min=1e-8)).mean()

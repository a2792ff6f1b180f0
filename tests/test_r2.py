"""The explained-variance monitor: 0 for a student that predicts the mean, 1 for a perfect one."""

import torch

from d2v.losses import explained_variance


def test_explained_variance_separates_learning_from_predicting_the_mean() -> None:
    target = torch.randn(500, 16) * 3 + 1
    assert abs(explained_variance(target.mean(0).expand_as(target), target).item()) < 1e-5
    assert abs(explained_variance(target, target).item() - 1) < 1e-6
    half = target.mean(0) + 0.5 * (target - target.mean(0))
    assert abs(explained_variance(half, target).item() - 0.75) < 1e-4

"""The norm between pooled features and a classification / regression head: `layer` (BEiT) or
`batch` (each feature standardized over the batch, no affine), as `finetune.<task>.head_norm`
picks it."""

from __future__ import annotations

import torch
from torch import nn

from d2v.config import ModelConfig
from d2v.downstream import build_model
from d2v.encoder import Encoder
from d2v.heads import BatchStandardize, Classifier
from d2v.modalities.image import ImageFrontend
from tests.helpers import tiny_params


def _shared_component_features(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(n, 8) features that all share one large vector; the class is in a small deviation."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 2, (n,), generator=g)
    shared = torch.linspace(-3.0, 3.0, 8)
    signal = 0.05 * (2.0 * labels.float() - 1.0)[:, None] * torch.ones(8)
    return shared + signal + 0.01 * torch.randn(n, 8, generator=g), labels


def test_batch_norm_removes_the_shared_component_layer_norm_keeps_it() -> None:
    x, labels = _shared_component_features(256)
    standardized = BatchStandardize(8).train()(x)
    # what separates the classes is all that is left: each feature's mean 0, std 1 over the batch
    assert standardized.mean(0).abs().max() < 1e-5
    assert (standardized[labels == 1].mean(0) - standardized[labels == 0].mean(0)).min() > 1.5
    layer_normed = nn.LayerNorm(8)(x)  # each row alike: the class shift is a small fraction
    spread = layer_normed[labels == 1].mean(0) - layer_normed[labels == 0].mean(0)
    assert spread.abs().max() < 0.1 * layer_normed.abs().mean()


def test_one_row_training_batch_and_eval_use_the_running_statistics() -> None:
    norm = BatchStandardize(8).train()
    x, _ = _shared_component_features(64)
    for _ in range(200):  # momentum 0.1: the running statistics converge
        norm(x)
    one = norm(x[:1])  # an epoch's last batch of one row: no error, running statistics
    assert torch.allclose(one, norm.eval()(x[:1]), atol=1e-6)
    assert torch.allclose(norm.eval()(x).mean(0), torch.zeros(8), atol=0.05)


def test_task_config_picks_the_head_norm() -> None:
    encoder = Encoder(ImageFrontend(28, 1, 4, 32, "learned"), ModelConfig(32, 2, 2))
    assert isinstance(Classifier(encoder, 10).fc_norm, nn.LayerNorm)
    params = tiny_params()
    assert params.finetune["sst2"].head_norm == "batch"
    assert params.finetune["imagenet"].head_norm == "layer"

    class _Task:  # what build_model reads of a task
        head, num_classes = "classify", 2

    model = build_model(_Task(), encoder, params.finetune["sst2"])  # type: ignore[arg-type]
    assert isinstance(model.fc_norm, BatchStandardize)
    assert list(model.fc_norm.parameters()) == []  # no affine: nothing for the optimizer
    model = build_model(_Task(), encoder, params.finetune["imagenet"])  # type: ignore[arg-type]
    assert isinstance(model.fc_norm, nn.LayerNorm)

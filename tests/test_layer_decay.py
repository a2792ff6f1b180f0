"""Layer-wise lr decay: the frontend is layer 0, block i layer i + 1, the head on top; each layer's
rate is `decay` times the one above; no weight decay on vectors."""

from __future__ import annotations

import pytest
import torch

from d2v.config import ModelConfig
from d2v.encoder import Encoder
from d2v.heads import Classifier
from d2v.layer_decay import layer_decay_groups, layer_id
from d2v.modalities.image import ImageFrontend


def test_layer_ids() -> None:
    assert layer_id("encoder.frontend.patch_embed.weight", 4) == 0
    assert layer_id("encoder.backbone.blocks.0.attn.qkv.weight", 4) == 1
    assert layer_id("encoder.backbone.blocks.3.mlp.fc2.bias", 4) == 4
    assert layer_id("encoder.backbone.norm.weight", 4) == 5
    assert layer_id("head.weight", 4) == 5


def test_groups_scale_the_rate_per_layer_and_cover_every_parameter() -> None:
    model = Classifier(Encoder(ImageFrontend(28, 1, 4, 32, "learned"), ModelConfig(32, 3, 2)), 10)
    groups = layer_decay_groups(model, depth=3, decay=0.5, weight_decay=0.05)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))
    head = next(g for g in groups if any(p is model.head.weight for p in g["params"]))
    embed = model.encoder.frontend.patch_embed.weight
    bottom = next(g for g in groups if any(p is embed for p in g["params"]))
    assert head["lr_scale"] == 1.0 and bottom["lr_scale"] == pytest.approx(0.5**4)
    assert all(g["weight_decay"] == 0.0 for g in groups if g["params"][0].ndim == 1)
    # decay 1 leaves every rate alone
    assert {g["lr_scale"] for g in layer_decay_groups(model, 3, 1.0, 0.0)} == {1.0}
    torch.optim.AdamW(groups, lr=1e-3)  # valid optimizer groups

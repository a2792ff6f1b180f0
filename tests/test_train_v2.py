"""data2vec 2.0 through the real DeepSpeed loop on each modality's embedded data: the loss falls,
the targets do not collapse, the decoder trains and the teacher follows the student."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from d2v.config import Method, Modality
from d2v.distributed import init_distributed
from d2v.modalities import pretrain_spec
from d2v.model_v2 import Data2Vec2
from d2v.train import pretrain
from tests.helpers import tiny_params

pytestmark = pytest.mark.slow


def v2_overrides(modality: str, steps: int, batch: int, copies: int, lr: float) -> list[str]:
    p = f"pretrain.{modality}"
    return [
        f"{p}.method=v2",
        f"{p}.v2.optim.steps={steps}",
        f"{p}.v2.optim.warmup_steps={steps // 10}",
        f"{p}.v2.optim.batch_size={batch}",
        f"{p}.v2.optim.lr={lr}",
        f"{p}.v2.clone_batch={copies}",
        f"{p}.log_every=5",
        f"{p}.checkpoint_every=1000",
        f"{p}.collapse.check_after=1000",
    ]


CASES = {
    "vision": ([], 60, 32, 4, 0.002),
    "speech": ([], 40, 8, 4, 0.002),
    "text": (["data.text.block_size=64", "data.text.max_seq_len=64"], 60, 16, 4, 0.002),
}


@pytest.mark.parametrize("modality", CASES)
def test_v2_loss_falls_on_the_embedded_data(
    modality: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    extra, steps, batch, copies, lr = CASES[modality]
    prepared = request.getfixturevalue(f"prepared_{modality}")
    params = tiny_params(*extra, *v2_overrides(modality, steps, batch, copies, lr))
    spec = pretrain_spec(params, Modality(modality), prepared)
    assert spec.method == Method.v2
    model, teacher, result = pretrain(
        spec,
        params.deepspeed,
        init_distributed(),
        0,
        tmp_path / "ckpt",
    )
    assert isinstance(model, Data2Vec2)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == steps // 5 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2]), losses
    assert result.final_target_std > 0.05  # not collapsed
    assert result.final_pred_std > 0.0
    s = dict(model.encoder.named_parameters())
    t = dict(teacher.model.named_parameters())
    name = "backbone.blocks.0.mlp.fc1.weight"
    assert not torch.equal(s[name], t[name])  # the teacher moved towards the student

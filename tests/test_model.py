"""Data2Vec on a tiny ViT: gradients reach every student parameter and no teacher parameter,
nothing is NaN, and the loss is computed on masked positions only."""

from __future__ import annotations

import torch

from d2v.config import BlockMaskConfig, LossConfig, ModelConfig, Norm, Sublayer, TargetConfig
from d2v.encoder import Encoder
from d2v.masking import block_mask
from d2v.modalities.image import ImageFrontend
from d2v.model import Data2Vec
from d2v.teacher import EMATeacher


def tiny_model(sublayer: Sublayer = Sublayer.ffn) -> Data2Vec:
    torch.manual_seed(0)
    cfg = ModelConfig(dim=32, depth=3, heads=2)
    encoder = Encoder(ImageFrontend(28, 1, 4, 32, "learned"), cfg)
    targets = TargetConfig(top_k=2, norm=Norm.layer, final_norm=Norm.layer, sublayer=sublayer)
    return Data2Vec(encoder, targets, LossConfig(beta=2.0), top_k=2)


def test_gradients_reach_every_student_parameter_and_no_teacher_parameter() -> None:
    model = tiny_model()
    teacher = EMATeacher(model.encoder)
    x = torch.randn(4, 1, 28, 28)
    mask = block_mask(4, (7, 7), BlockMaskConfig(), torch.Generator().manual_seed(0))
    out = model(x, mask, teacher)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient for student {name}"
        assert torch.isfinite(p.grad).all(), f"non-finite gradient for {name}"
        assert p.grad.abs().sum() > 0, f"zero gradient for student {name}"
    for name, p in teacher.model.named_parameters():
        assert p.grad is None, f"teacher {name} got a gradient"
    assert out.num_masked == int(mask.mask.sum())


def test_all_target_sublayers_work() -> None:
    for sub in Sublayer:
        model = tiny_model(sub)
        teacher = EMATeacher(model.encoder)
        mask = block_mask(2, (7, 7), BlockMaskConfig(), torch.Generator().manual_seed(1))
        out = model(torch.randn(2, 1, 28, 28), mask, teacher)
        assert torch.isfinite(out.loss) and out.target_std > 0


def test_student_sees_mask_embedding_teacher_sees_input() -> None:
    """Changing a masked patch's pixels changes the teacher's targets there but not the student."""
    model = tiny_model().eval()
    teacher = EMATeacher(model.encoder)
    mask = block_mask(1, (7, 7), BlockMaskConfig(ratio=0.5), torch.Generator().manual_seed(2))
    x = torch.randn(1, 1, 28, 28)
    i = int(torch.nonzero(mask.mask[0])[0])
    r, c = divmod(i, 7)
    y = x.clone()
    y[..., 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 5.0
    with torch.no_grad():
        torch.testing.assert_close(model.encode_student(x, mask), model.encode_student(y, mask))
        assert not torch.allclose(
            model.encode_teacher(x, mask, teacher), model.encode_teacher(y, mask, teacher)
        )

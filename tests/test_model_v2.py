"""data2vec 2.0 on tiny models of the three modalities: the backbone sees exactly the visible
tokens of the M copies (shape and FLOPs), the teacher runs once per step on the B samples, the
decoder predicts the target's shape, gradients reach every trainable student parameter and no
teacher parameter, and the student never sees a masked token."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from d2v.config import (
    DecoderConfig,
    InverseBlockMaskConfig,
    LossConfig,
    ModelConfig,
    Norm,
    SpanMaskConfig,
    Sublayer,
    TargetConfig,
)
from d2v.decoder import ConvDecoder
from d2v.encoder import Encoder
from d2v.masking import MaskInfo, fixed_span_mask, fixed_token_mask, inverse_block_mask
from d2v.modalities.audio import Audio, AudioFrontend, ConvFeatureEncoder, frame_lengths
from d2v.modalities.image import ImageFrontend
from d2v.modalities.tokens import TextFrontend
from d2v.model_v2 import Data2Vec2
from d2v.teacher import EMATeacher

MODEL = ModelConfig(dim=32, depth=3, heads=2)
TARGETS = TargetConfig(None, Norm.instance, Norm.layer, Sublayer.ffn)
M = 4  # copies per sample
KERNELS, STRIDES = [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def vision_case(noise: float = 0.01) -> tuple[Data2Vec2, torch.Tensor, MaskInfo]:
    torch.manual_seed(0)
    encoder = Encoder(ImageFrontend(28, 1, 4, MODEL.dim, "sincos"), MODEL)
    decoder = ConvDecoder(DecoderConfig(dim=32, layers=2, groups=8, noise_std=noise), 32, (7, 7))
    model = Data2Vec2(encoder, decoder, TARGETS, LossConfig(beta=0.0), top_k=3)
    mask = inverse_block_mask(3 * M, (7, 7), InverseBlockMaskConfig(block=2), gen(0))
    mask.copies = M
    return model, torch.randn(3, 1, 28, 28), mask


def speech_case() -> tuple[Data2Vec2, Audio, MaskInfo]:
    torch.manual_seed(0)
    frontend = AudioFrontend(MODEL.dim, ConvFeatureEncoder(16, KERNELS, STRIDES), 16, 4)
    decoder = ConvDecoder(DecoderConfig(dim=16, layers=2, kernel=7, groups=8), 32)
    targets = TargetConfig(None, Norm.instance, Norm.none, Sublayer.ffn)
    model = Data2Vec2(Encoder(frontend, MODEL), decoder, targets, LossConfig(beta=0.0), 2)
    lengths = torch.tensor([16000, 9000, 12000])
    wave = torch.randn(3, 16000) * (torch.arange(16000)[None] < lengths[:, None])
    frames = frame_lengths(lengths, KERNELS, STRIDES)
    T = int(frame_lengths(torch.tensor(16000), KERNELS, STRIDES))
    mask = fixed_span_mask(
        frames.repeat_interleave(M), T, SpanMaskConfig(0.5, 5, 1), gen(0), copies=M
    )
    return model, Audio(wave, lengths), mask


def text_case(noise: float = 0.01) -> tuple[Data2Vec2, torch.Tensor, MaskInfo]:
    torch.manual_seed(0)
    encoder = Encoder(TextFrontend(100, 40, MODEL.dim, pad_id=1), MODEL)
    cfg = DecoderConfig(dim=32, layers=2, kernel=9, groups=1, residual=False, noise_std=noise)
    targets = TargetConfig(None, Norm.instance, Norm.none, Sublayer.ffn)
    model = Data2Vec2(encoder, ConvDecoder(cfg, 32), targets, LossConfig(0.0, False), 3)
    ids = torch.randint(5, 100, (3, 40))
    ids[:, 0] = 0
    ids[1, 30:] = 1  # padding
    special = (ids < 5).repeat_interleave(M, 0)
    return model, ids, fixed_token_mask(special, 0.48, gen(0), copies=M)


CASES = {"vision": vision_case, "speech": speech_case, "text": text_case}


@pytest.mark.parametrize("modality", CASES)
def test_backbone_sees_only_the_visible_tokens_of_every_copy(modality: str) -> None:
    model, source, mask = CASES[modality]()
    seen = []
    model.encoder.backbone.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    with FlopCounterMode(display=False) as student_flops:
        model.encode_student(source, mask)
    R, T = mask.mask.shape
    K = T - int(mask.mask[0].sum())
    assert seen == [torch.Size([R, K, MODEL.dim])]
    assert R == 3 * M
    # inside the student, the backbone costs the FLOPs of K tokens per row, not T
    in_student = sum(student_flops.get_flop_counts()["Encoder.backbone"].values())
    with FlopCounterMode(display=False) as visible_flops:
        model.encoder.backbone(torch.randn(R, K, MODEL.dim))
    with FlopCounterMode(display=False) as full_flops:
        model.encoder.backbone(torch.randn(R, T, MODEL.dim))
    assert in_student == visible_flops.get_total_flops() < full_flops.get_total_flops()


@pytest.mark.parametrize("modality", CASES)
def test_teacher_runs_once_per_sample_and_targets_match_predictions(modality: str) -> None:
    model, source, mask = CASES[modality]()
    teacher = EMATeacher(model.encoder, shared=())
    calls = []
    teacher.model.register_forward_hook(lambda m, args, out: calls.append(out.last.shape[0]))
    out = model(source, mask, teacher)
    assert calls == [3]  # once, on the B samples, not B * M rows
    assert out.num_masked == int(mask.mask.sum())
    pred = model.encode_student(source, mask)
    assert pred.shape == (int(mask.mask.sum()), MODEL.dim)


@pytest.mark.parametrize("modality", CASES)
def test_gradients_reach_every_trainable_student_parameter_and_no_teacher_parameter(
    modality: str,
) -> None:
    model, source, mask = CASES[modality]()
    teacher = EMATeacher(model.encoder)
    out = model(source, mask, teacher)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert name.endswith("mask_emb"), f"{name} is frozen"
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), name
    for name, p in teacher.model.named_parameters():
        assert p.grad is None, f"teacher {name} got a gradient"


def test_decoder_restores_token_order_and_keeps_padding_out() -> None:
    """With zero noise and an identity-like decoder input, visible outputs land at their own
    positions, masked slots are zero, and padding slots are zeroed."""
    from d2v.decoder import restore_padding, restore_sequence

    mask = fixed_token_mask(torch.zeros(2, 10, dtype=torch.bool), 0.4, gen(1))
    K = mask.ids_keep.shape[1]
    visible = mask.ids_keep[..., None].float() + 1  # each slot carries its own position + 1
    x = restore_sequence(visible, mask, noise_std=0.0)
    expect = torch.where(mask.mask, 0.0, torch.arange(10.0) + 1)
    assert torch.equal(x[..., 0], expect)
    pad = torch.zeros(2, K, dtype=torch.bool)
    pad[:, 0] = True
    full_pad = restore_padding(pad, mask)
    assert full_pad.sum() == 2 and not (full_pad & mask.mask).any()
    assert (restore_sequence(visible, mask, 0.0, full_pad)[full_pad] == 0).all()


@pytest.mark.parametrize("modality", ["vision", "text"])
def test_student_never_sees_a_masked_token(modality: str) -> None:
    model, source, mask = CASES[modality](noise=0.0)
    model.eval()
    i = int(torch.nonzero(mask.mask[0])[0])  # a token masked in every copy? no: in row 0 only
    rows = [r for r in range(M) if mask.mask[r, i]]  # sample 0's copies that mask it
    changed = source.clone()
    if modality == "vision":
        r, c = divmod(i, 7)
        changed[0, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 5.0
    else:
        changed[0, i] = (changed[0, i] + 1 - 5) % 95 + 5
    with torch.no_grad():
        a = model.encoder(source, mask, visible_only=True).last
        b = model.encoder(changed, mask, visible_only=True).last
    for r in range(M):
        same = torch.allclose(a[r], b[r])
        assert same == (r in rows), (r, rows)

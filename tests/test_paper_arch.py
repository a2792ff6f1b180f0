"""The data2vec core on the paper's architectures (`model.arch: paper`): data2vec and
data2vec 2.0 train them (gradients reach every student parameter and no teacher parameter),
every target sublayer reads something meaningful from a post-norm block, and the generic
encoder is unchanged by the option."""

from __future__ import annotations

import pytest
import torch

from d2v.config import (
    Arch,
    BlockMaskConfig,
    DecoderConfig,
    InverseBlockMaskConfig,
    LossConfig,
    ModelConfig,
    Norm,
    SpanMaskConfig,
    SpeechPretrainConfig,
    Sublayer,
    TargetConfig,
    TokenMaskConfig,
    VisionPretrainConfig,
)
from d2v.decoder import ConvDecoder
from d2v.masking import (
    block_mask,
    fixed_span_mask,
    fixed_token_mask,
    inverse_block_mask,
    span_mask,
    token_mask,
)
from d2v.modalities import speech, vision
from d2v.modalities.audio import Audio, frame_lengths
from d2v.modalities.text import build_encoder
from d2v.model import Data2Vec
from d2v.model_v2 import Data2Vec2
from d2v.teacher import EMATeacher

PAPER = ModelConfig(dim=32, depth=3, heads=2, arch=Arch.paper)
M = 4


def text_ids() -> torch.Tensor:
    ids = torch.randint(5, 100, (3, 24), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = 0
    ids[1, 16:] = 1  # padding
    return ids


def text_v1(sublayer: Sublayer = Sublayer.ffn):
    torch.manual_seed(0)
    encoder = build_encoder(PAPER, 100, 24, pad_id=1)
    targets = TargetConfig(None, Norm.layer, Norm.none, sublayer)
    model = Data2Vec(encoder, targets, LossConfig(beta=4.0), top_k=2)
    ids = text_ids()
    mask = token_mask(ids, ids < 5, TokenMaskConfig(), 4, 100, 5, torch.Generator().manual_seed(1))
    return model, ids, mask


def text_v2():
    torch.manual_seed(0)
    encoder = build_encoder(PAPER, 100, 24, pad_id=1)
    cfg = DecoderConfig(dim=32, layers=2, kernel=9, groups=1, residual=False)
    targets = TargetConfig(None, Norm.instance, Norm.none, Sublayer.ffn)
    model = Data2Vec2(encoder, ConvDecoder(cfg, 32), targets, LossConfig(0.0, False), 3)
    ids = text_ids()
    special = (ids < 5).repeat_interleave(M, 0)
    return model, ids, fixed_token_mask(special, 0.48, torch.Generator().manual_seed(0), copies=M)


def vision_v1():
    """BEiT with one relative position bias shared by the blocks."""
    torch.manual_seed(0)
    cfg = VisionPretrainConfig(patch_size=4, pos="shared_relative")
    encoder = vision.build_encoder(PAPER, cfg, 28, 1)
    targets = TargetConfig(None, Norm.layer, Norm.layer, Sublayer.ffn)
    model = Data2Vec(encoder, targets, LossConfig(beta=2.0), top_k=2)
    mask = block_mask(3, (7, 7), BlockMaskConfig(), torch.Generator().manual_seed(0))
    return model, torch.randn(3, 1, 28, 28), mask


def vision_v2():
    """BEiT with a relative position bias per block, on the visible patches of each copy."""
    torch.manual_seed(0)
    cfg = VisionPretrainConfig(patch_size=4, pos="relative")
    encoder = vision.build_encoder(PAPER, cfg, 28, 1)
    decoder = ConvDecoder(DecoderConfig(dim=32, layers=2, groups=8), 32, (7, 7))
    targets = TargetConfig(None, Norm.instance, Norm.layer, Sublayer.ffn)
    model = Data2Vec2(encoder, decoder, targets, LossConfig(beta=0.0), top_k=3)
    mask = inverse_block_mask(3 * M, (7, 7), InverseBlockMaskConfig(block=2), torch.Generator())
    mask.copies = M
    return model, torch.randn(3, 1, 28, 28), mask


SPEECH = SpeechPretrainConfig(frontend="waveform", conv_channels=16, pos_kernel=19, pos_groups=4)


def speech_audio() -> tuple[Audio, torch.Tensor, int]:
    lengths = torch.tensor([16000, 9000, 12000])
    wave = torch.randn(3, 16000) * (torch.arange(16000)[None] < lengths[:, None])
    frames = frame_lengths(lengths, SPEECH.conv_kernels, SPEECH.conv_strides)
    return Audio(wave, lengths), frames, int(frames.max())


def speech_v1():
    """wav2vec 2.0 / data2vec audio: bias-free CNN, stacked conv positions, post-norm."""
    torch.manual_seed(0)
    targets = TargetConfig(None, Norm.instance, Norm.none, Sublayer.ffn)
    model = Data2Vec(speech.build_encoder(PAPER, SPEECH), targets, LossConfig(beta=0.0), 2)
    audio, frames, T = speech_audio()
    mask = span_mask(frames, T, SpanMaskConfig(0.65, 5, 1), torch.Generator().manual_seed(0))
    return model, audio, mask


def speech_v2():
    torch.manual_seed(0)
    decoder = ConvDecoder(DecoderConfig(dim=16, layers=2, kernel=7, groups=8), 32)
    targets = TargetConfig(None, Norm.instance, Norm.none, Sublayer.ffn)
    encoder = speech.build_encoder(PAPER, SPEECH)
    model = Data2Vec2(encoder, decoder, targets, LossConfig(beta=0.0), 2)
    audio, frames, T = speech_audio()
    g = torch.Generator().manual_seed(0)
    mask = fixed_span_mask(frames.repeat_interleave(M), T, SpanMaskConfig(0.5, 5, 1), g, copies=M)
    return model, audio, mask


CASES = {
    "text-v1": text_v1,
    "text-v2": text_v2,
    "vision-v1": vision_v1,
    "vision-v2": vision_v2,
    "speech-v1": speech_v1,
    "speech-v2": speech_v2,
}


@pytest.mark.parametrize("case", CASES)
def test_gradients_reach_every_student_parameter_and_no_teacher_parameter(case: str) -> None:
    model, source, mask = CASES[case]()
    teacher = EMATeacher(model.encoder)
    out = model(source, mask, teacher)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.target_std > 0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert name.endswith("mask_emb"), f"{name} is frozen"
            continue
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"
        assert torch.isfinite(p.grad).all(), name
    for name, p in teacher.model.named_parameters():
        assert p.grad is None, f"teacher {name} got a gradient"


def test_post_norm_sublayers_are_the_block_s_own_tensors() -> None:
    """attn and ffn are the branches before their residuals, ffn_res the FFN's residual sum
    before the block's closing layer norm, block the block's output (what HF calls the layer's
    hidden state)."""
    model, ids, _ = text_v1()
    encoder = model.encoder.eval()
    x = encoder.frontend(ids)
    with torch.no_grad():
        layers = {s: encoder(ids, collect=s).layers for s in Sublayer}
        first = encoder.backbone.blocks[0]
        a = first.attn(x.x, x.padding_mask)
        h = first.norm1(x.x + a)
        f = first.mlp(h)
    torch.testing.assert_close(layers[Sublayer.attn][0], a)
    torch.testing.assert_close(layers[Sublayer.ffn][0], f)
    torch.testing.assert_close(layers[Sublayer.ffn_res][0], h + f)
    torch.testing.assert_close(layers[Sublayer.block][0], first.norm2(h + f))
    torch.testing.assert_close(layers[Sublayer.block][-1], encoder(ids).last)


@pytest.mark.parametrize("sublayer", list(Sublayer))
def test_every_target_sublayer_trains_the_paper_encoder(sublayer: Sublayer) -> None:
    model, ids, mask = text_v1(sublayer)
    out = model(ids, mask, EMATeacher(model.encoder))
    assert torch.isfinite(out.loss) and out.target_std > 0


def test_relative_positions_of_kept_tokens_are_their_places_in_the_full_grid() -> None:
    """A data2vec 2.0 student's row holds CLS and some patches: its bias is the full grid's
    bias at those tokens (BEiT's table indexed by their true offsets)."""
    from d2v.relpos import RelativePositionBias

    bias = RelativePositionBias((3, 4), heads=2)
    with torch.no_grad():
        bias.table.normal_()
    full = bias()  # (1, H, 13, 13)
    keep = torch.tensor([[0, 1, 5, 12], [0, 3, 4, 7]])
    rows = bias(keep)  # (2, H, 4, 4)
    for r in range(2):
        torch.testing.assert_close(rows[r], full[0][:, keep[r]][:, :, keep[r]])
    assert full[0, :, 1, 2].tolist() == full[0, :, 5, 6].tolist()  # same offset, same bias

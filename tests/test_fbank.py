"""The log-mel front end: 50 Hz frames like the waveform CNN, the shape the frame count formula
gives, padding frames flagged and never masked, mel filters that cover the spectrum, a tone
that lights up the mel band of its frequency, and the teacher reusing the student's features of
the same batch."""

from __future__ import annotations

import copy
import math
import pickle

import torch

from d2v.config import LossConfig, ModelConfig, SpanMaskConfig, TargetConfig
from d2v.encoder import Encoder
from d2v.masking import span_mask
from d2v.modalities.audio import Audio, AudioFrontend
from d2v.modalities.fbank import LogMelStack, fbank_frames, mel_matrix
from d2v.model import Data2Vec, teacher_targets
from d2v.teacher import EMATeacher


def test_fbank_frames_are_50_hz_and_match_the_formula() -> None:
    fbank = LogMelStack(80, 2)
    for samples in (400, 559, 560, 720, 16000, 16000 * 7 + 123):
        feats = fbank(torch.randn(2, samples))
        assert feats.shape == (2, int(fbank_frames(torch.tensor(samples), 2)), 160)
    assert int(fbank_frames(torch.tensor(16000 * 10), 2)) in (498, 499)  # ~50 frames per second


def test_mel_filters_cover_the_spectrum_and_a_tone_hits_its_band() -> None:
    mel = mel_matrix(80, 16000)
    assert mel.shape == (201, 80) and (mel >= 0).all() and (mel.sum(0) > 0).all()  # none empty
    t = torch.arange(16000) / 16000
    tone = torch.sin(2 * math.pi * 1000 * t)[None]
    feats = LogMelStack(80, 1)(tone)[0]  # (F, 80)
    peak = int(feats.mean(0).argmax())
    centre_hz = 700 * (
        10
        ** (
            torch.linspace(2595 * math.log10(1 + 20 / 700), 2595 * math.log10(1 + 8000 / 700), 82)
            / 2595
        )
        - 1
    )
    assert abs(float(centre_hz[peak + 1]) - 1000) < 120


def test_fbank_encoder_flags_padding_and_masks_spare_it() -> None:
    model = ModelConfig(dim=32, depth=2, heads=2)
    frontend = AudioFrontend(model.dim, LogMelStack(80, 2), 16, 4)
    encoder = Encoder(frontend, model)
    lengths = torch.tensor([32000, 20000, 8000])
    wave = torch.randn(3, 32000) * (torch.arange(32000)[None] < lengths[:, None])
    out = encoder(Audio(wave, lengths))
    frames = fbank_frames(lengths, 2)
    T = out.last.shape[1]
    assert int(frames[0]) == T
    assert out.padding_mask.tolist() == (torch.arange(T)[None] >= frames[:, None]).tolist()
    mask = span_mask(frames, T, SpanMaskConfig(0.65, 10, 1), torch.Generator().manual_seed(0))
    assert not (mask.mask & out.padding_mask).any()
    assert mask.mask.sum() > 0
    # masked frames reach the student as the mask embedding
    masked = encoder(Audio(wave, lengths), mask)
    assert not torch.allclose(masked.last, out.last)


def test_fbank_features_are_reused_only_for_the_same_unmodified_wave() -> None:
    fbank = LogMelStack(80, 2)
    wave = torch.randn(2, 8000)
    first = fbank(wave)
    assert fbank(wave) is first  # the EMA teacher's call in the same step
    again = fbank(wave.clone())  # equal values, another tensor: computed
    assert again is not first and torch.equal(again, first)
    wave.mul_(2.0)  # modified in place: computed again, from the new values
    assert not torch.equal(fbank(wave), first)
    copied = copy.deepcopy(fbank)
    assert torch.equal(copied(wave), fbank(wave))
    restored = pickle.loads(pickle.dumps(fbank))
    assert len(restored._kept) == 0 and torch.equal(restored(wave), fbank(wave))


def test_shared_fbank_teacher_targets_match_a_fresh_computation() -> None:
    model = ModelConfig(dim=32, depth=2, heads=2)
    encoder = Encoder(AudioFrontend(model.dim, LogMelStack(80, 2), 16, 4), model)
    student = Data2Vec(encoder, TargetConfig(), LossConfig(), top_k=2)
    teacher = EMATeacher(student.encoder, ["frontend.features"])
    assert teacher.model.frontend.features is student.encoder.frontend.features
    wave = torch.randn(2, 16000)
    audio = Audio(wave, torch.tensor([16000, 16000]))
    T = int(fbank_frames(torch.tensor(16000), 2))
    mask = span_mask(
        torch.tensor([T, T]), T, SpanMaskConfig(0.65, 4, 1), torch.Generator().manual_seed(0)
    )
    student.encode_student(audio, mask)  # leaves this batch's features for the teacher
    shared = teacher_targets(audio, mask, teacher, student.targets_cfg, 2)
    fresh = Audio(wave.clone(), audio.lengths)
    assert torch.equal(shared, teacher_targets(fresh, mask, teacher, student.targets_cfg, 2))

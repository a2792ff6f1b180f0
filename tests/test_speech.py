"""Speech modality: conv feature encoder rate, padding, span masks on frames, instance-norm
targets, and CTC fine-tuning on the embedded (flite) corpus."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from d2v.config import Modality, ModelConfig, Norm, SpanMaskConfig
from d2v.downstream import build_model, selection_view
from d2v.finetune import finetune, predict
from d2v.heads import greedy_decode, labels_to_text
from d2v.modalities import downstream_task, pretrain_spec
from d2v.modalities.audio import Audio, AudioFrontend, ConvFeatureEncoder, frame_lengths
from d2v.model import Data2Vec
from d2v.targets import make_targets, normalize
from d2v.teacher import EMATeacher
from tests.helpers import V1, tiny_params

PAPER_KERNELS = [10, 3, 3, 3, 3, 2, 2]
PAPER_STRIDES = [5, 2, 2, 2, 2, 2, 2]


def test_paper_conv_encoder_turns_16khz_into_50hz_frames() -> None:
    frontend = AudioFrontend(768, ConvFeatureEncoder(512, PAPER_KERNELS, PAPER_STRIDES), 128, 16)
    wave = torch.randn(1, 16000 * 4)
    feats = frontend.features(wave)  # (B, T, C)
    assert feats.shape == (1, 199, 512)  # 4 s -> 50 Hz minus the 400-sample receptive field
    n = frame_lengths(torch.tensor([16000 * 10, 16000, 400, 399]), PAPER_KERNELS, PAPER_STRIDES)
    assert n.tolist() == [499, 49, 1, 0]  # hop 320 samples = 20 ms
    hop = int(np.prod(PAPER_STRIDES))
    assert 16000 / hop == 50.0


def _speech_model(model: ModelConfig) -> tuple[Data2Vec, EMATeacher]:
    params = tiny_params()
    cfg = params.pretrain.speech
    frontend = AudioFrontend(
        model.dim, ConvFeatureEncoder(16, cfg.conv_kernels, cfg.conv_strides), 16, 4
    )
    from d2v.encoder import Encoder

    torch.manual_seed(0)
    student = Data2Vec(Encoder(frontend, model), cfg.v1.targets, cfg.v1.loss, top_k=2)
    return student, EMATeacher(student.encoder, cfg.shared)


def test_padding_frames_are_never_masked_nor_regressed() -> None:
    model = ModelConfig(dim=32, depth=2, heads=2)
    student, teacher = _speech_model(model)
    student.eval()
    lengths = torch.tensor([16000, 9000])
    wave = torch.randn(2, 16000)
    wave[1, 9000:] = 0
    frontend = student.encoder.frontend
    T = frontend.features(wave).shape[1]
    frames = frame_lengths(lengths, frontend.features.kernels, frontend.features.strides)
    from d2v.masking import span_mask

    mask = span_mask(frames, T, SpanMaskConfig(0.65, 5, 2), torch.Generator().manual_seed(0))
    assert not mask.mask[1, frames[1] :].any()  # padding frames never masked
    loss = student(Audio(wave, lengths), mask, teacher).loss
    noisy = wave.clone()
    noisy[1, 9000:] = torch.randn(7000) * 5  # whatever sits in the padding changes nothing
    assert torch.allclose(student(Audio(noisy, lengths), mask, teacher).loss, loss, atol=1e-5)


def test_instance_norm_targets_are_normalized_over_time_per_channel() -> None:
    y = torch.randn(2, 30, 8) * 3 + 5
    padding = torch.zeros(2, 30, dtype=torch.bool)
    padding[1, 20:] = True
    y[1, 20:] = 1000.0  # padding must not enter the statistics
    cfg = tiny_params().pretrain.speech.v1.targets
    assert cfg.norm == Norm.instance
    t = make_targets([y, y], cfg, 2, padding)
    valid = t[1, :20]
    assert torch.allclose(valid.mean(0), torch.zeros(8), atol=1e-4)
    assert torch.allclose(valid.var(0, unbiased=False), torch.ones(8), atol=1e-3)
    assert torch.allclose(normalize(y, Norm.instance)[0].mean(0), torch.zeros(8), atol=1e-4)


def test_speech_pretraining_batches_are_similar_lengths_cropped_and_half_masked(
    prepared_speech: Path,
) -> None:
    params = tiny_params(*V1)
    spec = pretrain_spec(params, Modality.speech, prepared_speech)
    lengths = spec.data.split.lengths
    idx = spec.data.indices(8, 0, 0)
    assert len(idx) == 8 and spec.data.indices(8, 0, 0).tolist() == idx.tolist()
    # batches hold neighbours in length: far less spread than random batches
    spread = np.ptp(lengths[idx]) / np.ptp(lengths)
    assert spread < 0.5, spread
    m1 = spec.data.mask(idx, torch.Generator().manual_seed(3))
    m2 = spec.data.mask(idx, torch.Generator().manual_seed(3))
    assert torch.equal(m1.mask, m2.mask)
    batch = spec.data.batch(idx)
    crop = min(lengths[idx].min(), int(params.pretrain.speech.crop_seconds * 16000))
    assert batch.wave.shape == (8, crop) and (batch.lengths == crop).all()  # no padding
    frames = frame_lengths(batch.lengths, PAPER_KERNELS, PAPER_STRIDES)
    assert m1.mask.shape == (8, int(frames[0]))
    fraction = m1.mask.float().mean()
    assert 0.35 < fraction < 0.6, fraction
    # an epoch visits every utterance at most once
    epoch = np.concatenate([spec.data.indices(8, s, 0) for s in range(len(lengths) // 8)])
    assert len(set(epoch.tolist())) == len(epoch)


def test_greedy_ctc_decoding_merges_repeats_and_drops_blanks() -> None:
    vocab = ["<blank>", "|", "'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ"]
    a, b, c, bar = vocab.index("A"), vocab.index("B"), vocab.index("C"), 1
    best = torch.tensor([[a, a, 0, a, bar, b, b, 0, c, 0, 0], [c, c, c, 0, 0, 0, 0, 0, 0, a, a]])
    assert greedy_decode(best, torch.tensor([11, 4]), vocab) == ["AA BC", "C"]
    labels = torch.tensor([[a, bar, b, -1], [c, c, -1, -1]])
    assert labels_to_text(labels, vocab) == ["A B", "CC"]


def test_ctc_loss_falls_on_the_embedded_corpus(prepared_speech: Path) -> None:
    params = tiny_params("finetune.librispeech.label_fraction=1.0")
    cfg = params.finetune["librispeech"]
    task = downstream_task(params, "librispeech", prepared_speech)
    torch.manual_seed(0)
    model = build_model(task, task.build_encoder(), cfg)
    subset = np.arange(len(task.train_labels))
    held_out = next(iter(task.eval_pass(16)))

    def held_out_loss() -> float:
        model.eval()
        with torch.no_grad():
            return model.loss(*held_out).item()

    before = held_out_loss()
    optim = cfg.optim.__class__(steps=60, batch_size=8, lr=2e-3, weight_decay=0.0, warmup_steps=6)
    losses = finetune(model, lambda: task.train_pass(subset, 8, 0), optim, torch.device("cpu"))
    assert all(np.isfinite(losses))
    after = held_out_loss()
    assert after < 0.6 * before, (before, after, losses)
    hyps, refs = predict(model, task.eval_pass(16), torch.device("cpu"))
    assert len(hyps) == len(refs) and all(isinstance(h, str) for h in hyps)
    scores = task.score(hyps, refs)
    assert set(scores) == {"wer", "cer"} and scores["cer"] >= 0


def test_studies_select_on_the_dev_split_never_on_the_reported_test_split(
    prepared_speech: Path,
) -> None:
    task = downstream_task(tiny_params(), "librispeech", prepared_speech)
    study = selection_view(task)

    def first_labels(passes) -> torch.Tensor:
        return next(iter(passes(64)))[1]

    dev = first_labels(task.extra_evals["dev"])
    assert torch.equal(first_labels(study.eval_pass), dev)
    assert not torch.equal(first_labels(task.eval_pass), dev)  # test: other speakers
    assert study.extra_evals == {} and study.notes["eval_split"] == "dev"
    assert task.notes["eval_split"] == "test"  # evaluate still reports test


def test_kept_buckets_reuse_tensors_across_epochs_and_change_no_update(
    prepared_speech: Path, monkeypatch
) -> None:
    from d2v.modalities import speech

    params = tiny_params("finetune.librispeech.label_fraction=1.0")
    cfg = params.finetune["librispeech"]
    task = downstream_task(params, "librispeech", prepared_speech)
    subset = np.arange(len(task.train_labels))
    train = task.train_pass(subset, 4, 0)
    first, second = [a.wave for a, _ in train], [a.wave for a, _ in train]
    assert {id(w) for w in second} == {id(w) for w in first}  # the same tensors: computed once
    assert [id(w) for w in second] != [id(w) for w in first]  # in another order
    optim = cfg.optim.__class__(steps=12, batch_size=4, lr=2e-3, weight_decay=0.0, warmup_steps=2)

    def run() -> tuple[list[float], dict]:
        torch.manual_seed(0)
        model = build_model(task, task.build_encoder(), cfg)
        losses = finetune(model, lambda: task.train_pass(subset, 4, 0), optim, torch.device("cpu"))
        return losses, model.state_dict()

    kept_losses, kept_state = run()
    monkeypatch.setattr(speech, "KEEP_BYTES", 0)  # nothing kept: every epoch pads anew
    fresh = task.train_pass(subset, 4, 0)
    one, two = [a.wave for a, _ in fresh], [a.wave for a, _ in fresh]  # both held: no id reuse
    assert not {id(w) for w in one} & {id(w) for w in two}
    fresh_losses, fresh_state = run()
    assert kept_losses == fresh_losses
    assert all(torch.equal(kept_state[k], fresh_state[k]) for k in kept_state)


def test_ctc_probe_encodes_each_bucket_once_and_trains_as_a_frozen_ctc_model(
    prepared_speech: Path,
) -> None:
    from d2v.heads import CTCModel, CTCProbe

    params = tiny_params("finetune.librispeech.label_fraction=1.0")
    cfg = params.finetune["librispeech"]
    task = downstream_task(params, "librispeech", prepared_speech)
    subset = np.arange(len(task.train_labels))
    optim = cfg.optim.__class__(steps=16, batch_size=4, lr=3e-3, weight_decay=0.0, warmup_steps=0)
    heads = []
    for model_class in (CTCModel, CTCProbe):
        torch.manual_seed(0)
        encoder = task.build_encoder()
        model = model_class(encoder, task.vocab)
        encoder.requires_grad_(False)
        calls: list[int] = []
        encoder.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        batches = task.train_pass(subset, 4, 0)  # one pass object, as the probe makes
        finetune(model, lambda batches=batches: batches, optim, torch.device("cpu"))
        heads.append((model.head.weight.detach().clone(), len(calls)))
    (plain, plain_calls), (probe, probe_calls) = heads
    buckets = len(list(task.train_pass(subset, 4, 0)))
    assert plain_calls == 16 and probe_calls == min(16, buckets) < 16
    assert torch.equal(plain, probe)  # the kept outputs are the frozen encoder's, bit for bit

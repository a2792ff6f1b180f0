"""Speech: how the generic pretraining loop and the CTC fine-tuning get their encoder, data and
masks from params and prepared audio shards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from d2v.config import Modality, ModelConfig, Params, SpeechPretrainConfig
from d2v.data.audio_shards import (
    AudioSplit,
    duration_subset,
    load_audio_split,
    load_speech_meta,
    pad_waves,
)
from d2v.data.shards import stratified_subset
from d2v.downstream import DownstreamTask
from d2v.encoder import Encoder
from d2v.heads import labels_to_text
from d2v.masking import MaskInfo, span_mask
from d2v.metrics import cer, wer
from d2v.modalities.audio import Audio, AudioFrontend, frame_lengths
from d2v.train import PretrainSpec


def build_encoder(model: ModelConfig, cfg: SpeechPretrainConfig) -> Encoder:
    frontend = AudioFrontend(
        model.dim,
        cfg.conv_channels,
        cfg.conv_kernels,
        cfg.conv_strides,
        cfg.pos_kernel,
        cfg.pos_groups,
    )
    return Encoder(frontend, model)


class SpeechWaves:
    """Pretraining view of a prepared split: waveforms cropped/padded to `crop_seconds` (fixed
    shapes, the same on every rank) and span masks over their valid frames."""

    def __init__(self, split: AudioSplit, cfg: SpeechPretrainConfig, sample_rate: int):
        self.split = split
        self.cfg = cfg
        self.crop = int(round(cfg.crop_seconds * sample_rate))
        self.frames = int(
            frame_lengths(torch.tensor(self.crop), cfg.conv_kernels, cfg.conv_strides)
        )

    def __len__(self) -> int:
        return len(self.split)

    def batch(self, indices: np.ndarray) -> Audio:
        wave, lengths = pad_waves(self.split, indices, max_samples=self.crop)
        return Audio(wave, lengths)

    def mask(self, indices: np.ndarray, generator: torch.Generator) -> MaskInfo:
        samples = torch.from_numpy(np.minimum(self.split.lengths[indices], self.crop))
        frames = frame_lengths(samples, self.cfg.conv_kernels, self.cfg.conv_strides)
        return span_mask(frames, self.frames, self.cfg.mask, generator)


def pretrain_spec(params: Params, prepared_dir: Path) -> PretrainSpec:
    cfg = params.pretrain.speech
    meta = load_speech_meta(prepared_dir)
    data = SpeechWaves(load_audio_split(prepared_dir, "train"), cfg, meta["sample_rate"])
    return PretrainSpec.from_config(
        cfg, Modality.speech, params.model.depth, lambda: build_encoder(params.model, cfg), data
    )


def _labels(split: AudioSplit, idx: np.ndarray) -> Tensor:
    """(B, U) character ids padded with -1."""
    rows = [split.labels(i) for i in idx]
    out = torch.full((len(rows), max((len(r) for r in rows), default=0)), -1, dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, : len(r)] = torch.from_numpy(np.asarray(r, dtype=np.int64))
    return out


def length_batches(
    split: AudioSplit, indices: np.ndarray, batch_size: int, seed: int | None
) -> Iterator[tuple[Audio, Tensor]]:
    """Batches of neighbours in length order (splits are stored sorted by length, so little
    padding), in a seeded random batch order; seed None keeps the order (evaluation)."""
    indices = np.sort(np.asarray(indices))
    chunks = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
    order = np.arange(len(chunks))
    if seed is not None:
        np.random.default_rng(seed).shuffle(order)
    for c in order:
        idx = chunks[c]
        wave, lengths = pad_waves(split, idx)
        yield Audio(wave, lengths), _labels(split, idx)


class _Pass:
    """A re-iterable pass over a split (each iteration re-reads from the memory map)."""

    def __init__(self, split: AudioSplit, indices: np.ndarray, bs: int, seed: int | None):
        self.args = (split, indices, bs, seed)

    def __iter__(self) -> Iterator[tuple[Audio, Tensor]]:
        return length_batches(*self.args)


def downstream_task(params: Params, task: str, prepared_dir: Path) -> DownstreamTask:
    """Speech recognition with a CTC head on a low-resource labeled subset, scored by WER / CER
    on held-out speakers; the other eval splits (e.g. the real LibriVox clips) as extras."""
    cfg = params.pretrain.speech
    task_cfg = params.finetune[task]
    meta = load_speech_meta(prepared_dir)
    vocab = list(meta["vocab"])
    train = load_audio_split(prepared_dir, "train")
    eval_names = list(meta["eval_splits"])
    primary = eval_names[0]
    evals = {name: load_audio_split(prepared_dir, name) for name in eval_names}

    def score(hyps: list[str], labels: list[Tensor]) -> dict[str, float]:
        refs = labels_to_text(
            torch.nn.utils.rnn.pad_sequence(list(labels), batch_first=True, padding_value=-1),
            vocab,
        )
        return {"wer": wer(refs, hyps), "cer": cer(refs, hyps)}

    def subset(fraction: float, seed: int) -> np.ndarray:
        if task_cfg.labeled_seconds is not None:
            return duration_subset(
                train.lengths, train.speakers, task_cfg.labeled_seconds, meta["sample_rate"], seed
            )
        return stratified_subset(train.speakers, fraction, seed)

    def eval_pass(split: AudioSplit):
        return lambda bs: _Pass(split, np.arange(len(split)), bs, None)

    source = params.data.speech.source
    return DownstreamTask(
        name=task,
        modality=Modality.speech,
        dataset="flite-librispeech-layout" if source == "flite" else "librispeech",
        metric="wer",
        num_classes=len(vocab),
        train_labels=train.speakers,
        build_encoder=lambda: build_encoder(params.model, cfg),
        train_pass=lambda idx, bs, seed: _Pass(train, idx, bs, seed),
        eval_pass=eval_pass(evals[primary]),
        score=score,
        head="ctc",
        vocab=vocab,
        extra_evals={
            name.replace("-", "_"): eval_pass(split)
            for name, split in evals.items()
            if name != primary
        },
        subset=subset,
        notes={"eval_split": primary},
    )

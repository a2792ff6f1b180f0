"""Speech: how the generic pretraining loop and the CTC fine-tuning get their encoder, data and
masks from params and prepared audio shards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from d2v.architecture import layout
from d2v.config import Arch, Method, Modality, ModelConfig, Params, SpeechPretrainConfig
from d2v.data.audio_shards import (
    AudioSplit,
    duration_subset,
    load_audio_split,
    pad_waves,
)
from d2v.data.meta import SpeechMeta, read_meta
from d2v.data.shards import stratified_subset
from d2v.decoder import ConvDecoder
from d2v.downstream import DownstreamTask
from d2v.encoder import Encoder
from d2v.heads import labels_to_text
from d2v.masking import MaskInfo, fixed_span_mask, span_mask
from d2v.metrics import cer, wer
from d2v.modalities.audio import (
    Audio,
    AudioFrontend,
    ConvFeatureEncoder,
    StackedConvPositions,
    frame_lengths,
)
from d2v.modalities.fbank import LogMelStack, fbank_frames
from d2v.sampling import length_bucketed_batches
from d2v.train import PretrainSpec


def build_encoder(model: ModelConfig, cfg: SpeechPretrainConfig) -> Encoder:
    """The generic encoder, or wav2vec 2.0 / data2vec audio (HF's Data2VecAudioModel) with
    `model.arch: paper`: bias-free convolutions, `pos_layers` stacked conv positions,
    post-norm blocks."""
    if model.arch == Arch.paper:
        pos = StackedConvPositions(model.dim, cfg.pos_kernel, cfg.pos_groups, cfg.pos_layers)
        frontend = AudioFrontend(
            model.dim, features(cfg, bias=False), 0, 0, pos_conv=pos, eps=model.norm_eps
        )
        return Encoder(frontend, model, layout(model, Modality.speech))
    return Encoder(AudioFrontend(model.dim, features(cfg), cfg.pos_kernel, cfg.pos_groups), model)


def features(cfg: SpeechPretrainConfig, bias: bool = True) -> nn.Module:
    """The frame-level front end: the wav2vec 2.0 waveform CNN, or log-mel filterbanks."""
    if cfg.frontend == "fbank":
        return LogMelStack(cfg.n_mels, cfg.fbank_stack)
    return ConvFeatureEncoder(cfg.conv_channels, cfg.conv_kernels, cfg.conv_strides, bias)


def speech_frames(cfg: SpeechPretrainConfig, samples: Tensor) -> Tensor:
    """Frames of the front end for `samples` valid samples (any shape)."""
    if cfg.frontend == "fbank":
        return fbank_frames(samples, cfg.fbank_stack)
    return frame_lengths(samples, cfg.conv_kernels, cfg.conv_strides)


class SpeechWaves:
    """Pretraining view of a prepared split: batches of utterances of similar length, each
    cropped to the shortest of its batch (at most `crop_seconds`; fairseq crops audio batches the
    same way), so no frame is padding; span masks over the frames (data2vec 2.0: `clone_batch`
    per utterance, all with the same count)."""

    def __init__(self, split: AudioSplit, cfg: SpeechPretrainConfig, sample_rate: int):
        self.split = split
        self.cfg = cfg
        self.max_crop = int(round(cfg.crop_seconds * sample_rate))
        self._epochs: dict[tuple[int, int, int], np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.split)

    def indices(self, batch_size: int, step: int, seed: int) -> np.ndarray:
        per_epoch = len(self) // batch_size
        epoch, i = divmod(step, max(per_epoch, 1))
        key = (batch_size, seed, epoch)
        if key not in self._epochs:
            self._epochs = {key: length_bucketed_batches(self.split.lengths, *key)}
        return self._epochs[key][i]

    def crop(self, indices: np.ndarray) -> int:
        """Samples every utterance of the global batch `indices` is cropped to."""
        return int(min(self.max_crop, self.split.lengths[indices].min()))

    def batch(self, indices: np.ndarray, rows: slice = slice(None)) -> Audio:
        wave, lengths = pad_waves(self.split, indices[rows], max_samples=self.crop(indices))
        return Audio(wave, lengths)

    def mask(self, indices: np.ndarray, generator: torch.Generator) -> MaskInfo:
        cfg = self.cfg
        T = int(speech_frames(cfg, torch.tensor(self.crop(indices))))
        if cfg.method == Method.v2:
            m = cfg.v2.clone_batch
            rows = torch.full((len(indices) * m,), T)
            return fixed_span_mask(rows, T, cfg.v2.mask, generator, copies=m)
        return span_mask(torch.full((len(indices),), T), T, cfg.v1.mask, generator)


def pretrain_spec(params: Params, prepared_dir: Path) -> PretrainSpec:
    cfg = params.pretrain.speech
    meta = read_meta(prepared_dir, SpeechMeta)
    data = SpeechWaves(load_audio_split(prepared_dir, "train"), cfg, meta.sample_rate)
    return PretrainSpec.from_config(
        cfg,
        Modality.speech,
        params.model.depth,
        lambda: build_encoder(params.model, cfg),
        data,
        build_decoder=lambda: ConvDecoder(cfg.v2.decoder, params.model.dim),
        span=cfg.active.mask.length,
    )


def _labels(split: AudioSplit, idx: np.ndarray) -> Tensor:
    """(B, U) character ids padded with -1."""
    rows = [split.labels(i) for i in idx]
    out = torch.full((len(rows), max((len(r) for r in rows), default=0)), -1, dtype=torch.long)
    for b, r in enumerate(rows):
        out[b, : len(r)] = torch.from_numpy(np.asarray(r, dtype=np.int64))
    return out


def length_chunks(indices: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches of neighbours in length order (splits are stored sorted by length, so little
    padding): fairseq's fixed length buckets."""
    indices = np.sort(np.asarray(indices))
    return [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]


def padded_batch(split: AudioSplit, idx: np.ndarray) -> tuple[Audio, Tensor]:
    wave, lengths = pad_waves(split, idx)
    return Audio(wave, lengths), _labels(split, idx)


KEEP_BYTES = 512 * 2**20  # training batches kept across epochs, in waveform bytes


class _Pass:
    """A re-iterable pass over a split. With a seed (training), each pass draws a new order of the
    same length buckets (fairseq's, reshuffled every epoch), so epochs differ but the whole
    sequence of epochs is fixed by the seed; the padded buckets are kept across epochs (up to
    `KEEP_BYTES`), so the front end sees the same tensors again and computes a bucket's log-mel
    features once per run (`fbank.LogMelStack`). Without one, the buckets in order, each read
    anew from the memory map."""

    def __init__(self, split: AudioSplit, indices: np.ndarray, bs: int, seed: int | None):
        self.split, self.indices, self.bs = split, indices, bs
        self.rng = None if seed is None else np.random.default_rng(seed)
        self.buckets = length_chunks(indices, bs)
        self._kept: dict[int, tuple[Audio, Tensor]] = {}
        self._kept_bytes = 0

    def __iter__(self) -> Iterator[tuple[Audio, Tensor]]:
        if self.rng is None:
            return (padded_batch(self.split, idx) for idx in self.buckets)
        return self._epoch(self.rng)

    def _epoch(self, rng: np.random.Generator) -> Iterator[tuple[Audio, Tensor]]:
        for c in rng.permutation(len(self.buckets)):
            yield self._bucket(int(c))

    def _bucket(self, c: int) -> tuple[Audio, Tensor]:
        if c in self._kept:
            return self._kept[c]
        batch = padded_batch(self.split, self.buckets[c])
        size = batch[0].wave.nbytes
        if self._kept_bytes + size <= KEEP_BYTES:
            self._kept[c], self._kept_bytes = batch, self._kept_bytes + size
        return batch


def downstream_task(params: Params, task: str, prepared_dir: Path) -> DownstreamTask:
    """Speech recognition with a CTC head on a low-resource labeled subset, scored by WER / CER
    on held-out speakers; the other eval splits (e.g. the real LibriVox clips) as extras."""
    cfg = params.pretrain.speech
    task_cfg = params.finetune[task]
    meta = read_meta(prepared_dir, SpeechMeta)
    vocab = list(meta.vocab)
    train = load_audio_split(prepared_dir, "train")
    eval_names = list(meta.eval_splits)
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
                train.lengths, train.speakers, task_cfg.labeled_seconds, meta.sample_rate, seed
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
        dev_pass=eval_pass(evals[meta.dev_split])
        if meta.dev_split in evals and meta.dev_split != primary
        else None,
        notes={"eval_split": primary},
    )

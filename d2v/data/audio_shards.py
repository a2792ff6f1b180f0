"""The prepared speech shards (written by `audio_prepare.py`) and their fast loader.

Layout of a prepared folder:

    out_dir/meta.json                sample_rate, vocab, splits, eval/dev split, skipped, source
    out_dir/<split>/audio.npy        float16 (S,): every waveform, concatenated, sorted by length
    out_dir/<split>/offsets.npy      int64 (N+1,): utterance i is audio[offsets[i]:offsets[i+1]]
    out_dir/<split>/labels.npy       int16 (L,): character ids (index into VOCAB), concatenated
    out_dir/<split>/label_offsets.npy  int64 (N+1,)
    out_dir/<split>/index.json       ids, speakers, transcripts, in the same order

Dims: N utterances, S samples at `sample_rate` Hz, L characters, B batch, T padded samples.
This module is what training reads; it imports no decoder (soundfile, scipy.signal) and no raw
layout code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from d2v.data.arrays import REMEDY, load_array
from d2v.data.errors import DataError, readable

if TYPE_CHECKING:  # the readers' batches are tensors; prepare (the writers) runs without torch
    import torch

# CTC letter vocabulary as wav2vec 2.0's LibriSpeech dictionary: 0 is the CTC blank, "|" the word
# boundary (a space in the transcript).
VOCAB: list[str] = ["<blank>", "|", "'", *(chr(c) for c in range(ord("A"), ord("Z") + 1))]
BLANK = 0
CHAR_ID = {c: i for i, c in enumerate(VOCAB) if len(c) == 1}


def encode_transcript(text: str) -> np.ndarray:
    """Character ids (int16) of an upper-case transcript, spaces as "|"; KeyError on others."""
    return np.asarray([CHAR_ID["|" if c == " " else c] for c in text], np.int16)


class AudioSplit:
    """One prepared split, memory-mapped: waveforms are read from disk only when indexed."""

    def __init__(self, split_dir: str | os.PathLike) -> None:
        split_dir = Path(split_dir)
        if not (split_dir / "index.json").is_file():
            raise DataError(f"no prepared speech split at {split_dir}")
        self.audio = load_array(split_dir / "audio.npy", mmap_mode="r")  # float16 (S,)
        self.offsets = load_array(split_dir / "offsets.npy")  # int64 (N+1,)
        self.label_data = load_array(split_dir / "labels.npy", mmap_mode="r")  # int16 (L,)
        self.label_offsets = load_array(split_dir / "label_offsets.npy")  # int64 (N+1,)
        with readable(split_dir / "index.json", REMEDY):  # parsed, and its three lists there
            index = json.loads((split_dir / "index.json").read_text())
            self.ids: list[str] = index["ids"]
            self.transcripts: list[str] = index["transcripts"]
            speakers = np.asarray(index["speakers"], dtype=str)
        _, inverse = np.unique(speakers, return_inverse=True)
        self.speakers: np.ndarray = inverse.astype(np.int64)  # (N,) speaker ids, sorted by name
        self.lengths: np.ndarray = np.diff(self.offsets)  # (N,) samples

    def __len__(self) -> int:
        return len(self.ids)

    def wave(self, i: int) -> np.ndarray:
        """Waveform of utterance `i`: float32 (T,)."""
        return np.asarray(self.audio[self.offsets[i] : self.offsets[i + 1]], np.float32)

    def labels(self, i: int) -> np.ndarray:
        """Character ids of utterance `i`: int64 (L_i,)."""
        lo, hi = self.label_offsets[i], self.label_offsets[i + 1]
        return np.asarray(self.label_data[lo:hi], np.int64)


def load_audio_split(prepared_dir: str | os.PathLike, split: str) -> AudioSplit:
    """The memory-mapped prepared split `split` of `prepared_dir`."""
    return AudioSplit(Path(prepared_dir) / split)


def pad_waves(
    split: AudioSplit,
    idx: np.ndarray,
    max_samples: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A zero-padded batch of the utterances `idx`: waves (B, T) float32 and lengths (B,) int64.

    Each wave longer than `max_samples` is cropped to it, at a random offset drawn from `rng` or
    from the start if `rng` is None. T is `max_samples` when given (fixed shapes), else the
    longest (cropped) wave of the batch. Samples at positions >= length are 0.
    """
    import torch

    idx = np.asarray(idx, np.int64)
    lengths = split.lengths[idx]
    crop = lengths if max_samples is None else np.minimum(lengths, max_samples)
    starts = np.zeros_like(crop) if rng is None else rng.integers(0, lengths - crop + 1)
    width = int(max_samples) if max_samples is not None else int(crop.max(initial=0))
    waves = np.zeros((len(idx), width), np.float32)
    begin = split.offsets[idx] + starts
    for b in range(len(idx)):
        waves[b, : crop[b]] = split.audio[begin[b] : begin[b] + crop[b]]
    return torch.from_numpy(waves), torch.from_numpy(crop.astype(np.int64))


def duration_subset(
    lengths: np.ndarray, speakers: np.ndarray, seconds: float, sample_rate: int, seed: int
) -> np.ndarray:
    """Sorted indices of a labeled subset of about `seconds` of audio, balanced over speakers.

    As Libri-light's 10 min / 1 h / 10 h splits: utterances are taken round-robin over the
    speakers (speakers in a seeded order, each speaker's utterances in a seeded order) until the
    total reaches `seconds` (the last one taken may pass it). Same seed, same subset.
    `lengths`: (N,) samples; `speakers`: (N,) any integer speaker ids.
    """
    lengths = np.asarray(lengths, np.int64)
    rng = np.random.default_rng(seed)
    _, speaker = np.unique(np.asarray(speakers), return_inverse=True)
    perm = rng.permutation(len(lengths))  # random order within each speaker
    grouped = perm[np.argsort(speaker[perm], kind="stable")]
    first = np.searchsorted(speaker[grouped], speaker[grouped], side="left")
    rank = np.empty(len(lengths), np.int64)
    rank[grouped] = np.arange(len(lengths)) - first  # position in its speaker's queue
    speaker_pos = rng.permutation(speaker.max(initial=-1) + 1)
    order = np.lexsort((speaker_pos[speaker], rank))  # round 0 of every speaker, then round 1...
    total = np.cumsum(lengths[order])
    n = min(int(np.searchsorted(total, seconds * sample_rate, side="left")) + 1, len(order))
    return np.sort(order[:n])

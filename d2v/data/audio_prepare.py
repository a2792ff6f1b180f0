"""Decode LibriSpeech-layout speech once into length-sorted arrays (the prepare stage).

Input: `raw_dir/<subset>/<speaker>/<chapter>/...` (LibriSpeech or the flite corpus). Output,
written atomically as a whole: the folder layout `audio_shards.py` documents and reads.
Each waveform is mono, resampled to `sample_rate`, and normalized to zero mean and unit variance
per utterance (wav2vec 2.0's `normalize=True`, which data2vec's speech models use). Sorting by
length lets a batch sampler bucket similar lengths and keeps padding small.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from d2v.atomic import atomic_path, write_json
from d2v.data.audio_shards import CHAR_ID, VOCAB, encode_transcript
from d2v.data.errors import DataError
from d2v.data.librispeech import ON_CORRUPT, SkipLog, Utterance, read_split
from d2v.data.meta import SpeechMeta
from d2v.data.pool import ordered_map, process_pool

log = logging.getLogger(__name__)

_SILENT_STD = 1e-4  # below ~3 steps of 16-bit PCM: dither at most, nothing to normalize
_EPS = 1e-5  # as torch.nn.functional.layer_norm in wav2vec 2.0's normalization
_CHUNK = 32  # utterances per worker task
_SKIPPED_LISTED = 20


def _probe(path: Path, sample_rate: int) -> tuple[int, str, str]:
    """(length in samples at `sample_rate`, reason, message); reason "" if the header is fine."""
    import soundfile as sf  # prepare-time only: the training stages read the shards

    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        return 0, "unreadable", f"cannot read audio {path}: {e}"
    return -(-info.frames * sample_rate // info.samplerate), "", ""  # resample_poly's length


def _probe_chunk(paths: list[Path], sample_rate: int) -> list[tuple[int, str, str]]:
    return [_probe(p, sample_rate) for p in paths]


class UnusableAudio(DataError):
    """An audio file that cannot be used; `reason` is the key counted in meta["skipped"]."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple:
        return (type(self), (str(self), self.reason))


def load_wave(path: Path, sample_rate: int) -> np.ndarray:
    """Decode, downmix, resample and normalize one file: float32 (T,), mean 0, variance 1.

    Raises UnusableAudio naming the file if it is unreadable, empty, non-finite or silent.
    """
    import soundfile as sf  # prepare-time only, as scipy.signal below (over a second to import)
    from scipy.signal import resample_poly

    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError, ValueError) as e:
        raise UnusableAudio(f"cannot decode audio {path}: {e}", "unreadable") from e
    if wave.shape[0] == 0:
        raise UnusableAudio(f"empty audio (0 samples) in {path}", "empty")
    bad = int((~np.isfinite(wave)).sum())
    if bad:  # a float WAV may hold NaN / Inf: training would die at step 0 naming no file
        raise UnusableAudio(f"{bad} non-finite samples (NaN / Inf) in {path}", "non_finite")
    wave = wave.mean(axis=1, dtype=np.float64)
    if rate != sample_rate:
        g = math.gcd(rate, sample_rate)
        wave = resample_poly(wave, sample_rate // g, rate // g)
    std = wave.std()
    if std < _SILENT_STD:
        raise UnusableAudio(f"silent audio (std {std:.2g}) in {path}", "silent")
    return ((wave - wave.mean()) / np.sqrt(std**2 + _EPS**2)).astype(np.float32)


def _decode_chunk(paths: list[Path], sample_rate: int) -> list[np.ndarray | tuple[str, str]]:
    """Worker: float16 waveforms, or (reason, message) for files that could not be used."""
    out: list[np.ndarray | tuple[str, str]] = []
    for path in paths:
        try:
            out.append(load_wave(path, sample_rate).astype(np.float16))
        except UnusableAudio as e:
            out.append((e.reason, str(e)))
    return out


def _list_split(
    raw_dir: Path, subsets: list[str], skipped: SkipLog, on_corrupt: str, limit: int | None
) -> list[Utterance]:
    utterances: list[Utterance] = []
    for subset in subsets:
        found, stats = read_split(raw_dir / subset, on_corrupt)
        skipped.merge(stats)  # its files are relative to raw_dir too
        utterances.extend(found)
    _refuse_duplicate_ids(utterances, raw_dir)
    kept = []
    for u in utterances[:limit]:
        if not u.transcript or any(c != " " and c not in CHAR_ID for c in u.transcript):
            skipped.add(
                u.path,
                "transcript_chars",
                f"transcript of {u.id} ({u.path}) has characters outside "
                f"the vocabulary A-Z ' space: {u.transcript!r}",
            )
            continue
        kept.append(u)
    return kept


def _sorted_by_length(
    pool: concurrent.futures.Executor | None,
    utterances: list[Utterance],
    sample_rate: int,
    max_seconds: float,
    skipped: SkipLog,
    window: int,
) -> tuple[list[Utterance], np.ndarray]:
    """Utterances with readable headers and at most `max_seconds`, sorted by length (stable)."""
    tasks = [
        ([u.path for u in utterances[s : s + _CHUNK]], sample_rate)
        for s in range(0, len(utterances), _CHUNK)
    ]
    probes = [p for chunk in ordered_map(pool, _probe_chunk, tasks, window) for p in chunk]
    kept, lengths = [], []
    for u, (length, reason, message) in zip(utterances, probes, strict=True):
        if reason:
            skipped.add(u.path, reason, message)
        elif length > max_seconds * sample_rate:
            skipped.add(
                u.path,
                "too_long",
                f"{u.path} lasts {length / sample_rate:.1f} s, more than max_seconds={max_seconds}",
            )
        else:
            kept.append(u)
            lengths.append(length)
    order = np.argsort(np.asarray(lengths, np.int64), kind="stable")
    return [kept[i] for i in order], np.asarray(lengths, np.int64)[order]


def _refuse_duplicate_ids(utterances: list[Utterance], raw_dir: Path) -> None:
    """Ids name utterances in the index, the splits and the reports: one id, one recording."""
    paths: dict[str, list[Path]] = {}
    for u in utterances:
        paths.setdefault(u.id, []).append(u.path)
    dups = {i: p for i, p in paths.items() if len(p) > 1}
    if dups:
        first = sorted(dups)[0]
        shown = ", ".join(str(p) for p in dups[first])
        raise DataError(
            f"{len(dups)} duplicate utterance ids in {raw_dir}, e.g. {first} ({shown}): "
            "rename or remove them"
        )


def _write_split(
    pool: concurrent.futures.Executor | None,
    utterances: list[Utterance],
    expected: np.ndarray,
    split_dir: Path,
    sample_rate: int,
    skipped: SkipLog,
    window: int,
) -> dict:
    """Decode in length order into `split_dir`; returns `{"utterances", "seconds", "speakers"}`."""
    if not utterances:
        raise DataError(f"no usable utterances for split {split_dir.name}")
    split_dir.mkdir(parents=True)
    audio = np.lib.format.open_memmap(
        split_dir / "audio.npy", "w+", np.float16, (int(expected.sum()),)
    )
    offsets, labels, kept = [0], [], []
    tasks = [
        ([u.path for u in utterances[s : s + _CHUNK]], sample_rate)
        for s in range(0, len(utterances), _CHUNK)
    ]
    decoded = contextlib.closing(ordered_map(pool, _decode_chunk, tasks, window))
    with (
        tqdm(total=len(utterances), desc=f"prepare {split_dir.name}", unit=" utt") as bar,
        decoded as chunks,
    ):
        for start, chunk in zip(range(0, len(utterances), _CHUNK), chunks, strict=True):
            for k, (u, result) in enumerate(zip(utterances[start:], chunk, strict=False)):
                if isinstance(result, tuple):
                    skipped.add(u.path, *result)
                    continue
                if len(result) != expected[start + k]:  # the header lied: corrupt
                    n = expected[start + k]
                    message = f"{u.path}: header says {n} samples, decoded {len(result)}"
                    skipped.add(u.path, "unreadable", message)
                    continue
                audio[offsets[-1] : offsets[-1] + len(result)] = result
                offsets.append(offsets[-1] + len(result))
                labels.append(encode_transcript(u.transcript))
                kept.append(u)
            bar.update(len(chunk))
    if not kept:
        raise DataError(f"no usable utterances for split {split_dir.name}")
    audio.flush()
    del audio
    if offsets[-1] != int(expected.sum()):  # a file failed after its header read: shrink
        full = np.load(split_dir / "audio.npy", mmap_mode="r")
        np.save(split_dir / "audio.tmp.npy", full[: offsets[-1]])
        del full
        os.replace(split_dir / "audio.tmp.npy", split_dir / "audio.npy")
    np.save(split_dir / "offsets.npy", np.asarray(offsets, np.int64))
    label_offsets = np.cumsum([0] + [len(x) for x in labels], dtype=np.int64)
    np.save(split_dir / "labels.npy", np.concatenate(labels).astype(np.int16))
    np.save(split_dir / "label_offsets.npy", label_offsets)
    index = {
        "ids": [u.id for u in kept],
        "speakers": [u.speaker for u in kept],
        "transcripts": [u.transcript for u in kept],
    }
    (split_dir / "index.json").write_text(json.dumps(index) + "\n")
    return {
        "utterances": len(kept),
        "seconds": round(offsets[-1] / sample_rate, 3),
        "speakers": len({u.speaker for u in kept}),
    }


def _default_dev(names: list[str]) -> str | None:
    if "dev" in names:
        return "dev"
    return next((n for n in names if n.startswith("dev")), None)


def prepare_speech(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    splits: dict[str, list[str]],
    sample_rate: int = 16000,
    max_seconds: float = 16.0,
    on_corrupt: str = "skip",
    limit_per_split: int | None = None,
    workers: int = 2,
    eval_splits: list[str] | None = None,
    dev_split: str | None = None,
    source: str = "",
) -> SpeechMeta:
    """Decode the raw subsets named in `splits` (prepared split -> raw subset folders) into
    length-sorted arrays under `out_dir` (layout in the module docstring).

    Skipped and counted (`on_corrupt="skip"`), or a DataError naming the file (`"fail"`):
    unreadable, empty or silent audio, audio longer than `max_seconds`, transcripts with
    characters outside VOCAB, transcript lines without audio and audio without a transcript.
    `limit_per_split` keeps the first N utterances (sorted by id) of each split. `dev_split`
    defaults to "dev" (or the first split starting with "dev"); `eval_splits` to every other split
    not starting with "train". Returns the meta written to `meta.json`.
    """
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
    raw_dir = Path(raw_dir)
    names = list(splits)
    dev_split = dev_split if dev_split is not None else _default_dev(names)
    if eval_splits is None:
        eval_splits = [n for n in names if n != dev_split and not n.startswith("train")]
    unknown = [n for n in [*eval_splits, dev_split] if n is not None and n not in splits]
    if unknown:
        raise ValueError(f"eval/dev splits {unknown} are not among the prepared splits {names}")
    skipped = SkipLog(on_corrupt, raw_dir)
    window = 2 * max(workers, 1)
    meta: dict = {
        "sample_rate": sample_rate,
        "vocab": VOCAB,
        "max_seconds": max_seconds,
        "normalize": "utterance",
        "splits": {},
        "eval_splits": eval_splits,
        "dev_split": dev_split,
        "source": source,
    }
    with atomic_path(out_dir) as tmp, process_pool(workers) as pool:
        for name, subsets in splits.items():
            utterances = _list_split(raw_dir, subsets, skipped, on_corrupt, limit_per_split)
            utterances, lengths = _sorted_by_length(
                pool, utterances, sample_rate, max_seconds, skipped, window
            )
            meta["splits"][name] = _write_split(
                pool, utterances, lengths, tmp / name, sample_rate, skipped, window
            )
            log.info("prepared split %s: %s", name, meta["splits"][name])
        meta["skipped"] = skipped.stats(_SKIPPED_LISTED)
        record = SpeechMeta.from_json(meta)
        write_json(tmp / "meta.json", record.to_json())
    if record.skipped["count"]:
        log.warning(
            "skipped %d utterances (%s), listed in %s",
            record.skipped["count"],
            record.skipped["by_reason"],
            Path(out_dir) / "meta.json",
        )
    return record

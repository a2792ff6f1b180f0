"""The embedded speech corpus: real sentences read by Debian's `flite`, in LibriSpeech layout.

Pseudo-speakers are voice x pitch x speed: a flite voice (`kal16`, `awb`, `rms`, `slt`), a target
mean F0 in Hz (`--setf int_f0_target_mean=`) and a duration stretch (`--setf duration_stretch=`,
above 1 is slower). `rms` ignores the F0 target (its output does not change), so its pitch is set
the tape-speed way instead: synthesize `r` times slower, then resample `r` times faster, which
scales F0 (and formants) by `r = pitch / median(pitches)` at the requested speed.

Written, atomically as a whole (16 kHz mono 16-bit FLAC; byte-identical on re-run):

    out_dir/<split>/<speaker>/<chapter>/<speaker>-<chapter>-<NNNN>.flac
    out_dir/<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt   `ID TRANSCRIPT`, upper-case
    out_dir/SPEAKERS.TXT                              id | voice | F0 (Hz) | stretch | split

Splits train / dev / test are disjoint in speakers and in sentences, so WER on dev and test
measures generalization to unseen voices and unseen text. `write_real_clips` adds the real
LibriVox read-speech clips of Debian `pocketsphinx-testdata` in the same layout.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm import tqdm

from d2v.atomic import atomic_path
from d2v.data.errors import DataError, SourceMissingError
from d2v.data.pool import ordered_map, process_pool

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FLITE_PACKAGE = "Debian package flite"
FLITE_PARAM = "data.speech.source"
REAL_CLIPS_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
REAL_PACKAGE = "Debian package pocketsphinx-testdata"
REAL_PARAM = "data.speech.real_clips_dir"
REAL_SPEAKER, REAL_CHAPTER = "9000", "1"
SPLITS = ("train", "dev", "test")
_F0_IGNORED = frozenset({"rms"})  # voices whose output int_f0_target_mean does not change
_FIRST_SPEAKER, _FIRST_CHAPTER = 100, 1000  # numeric ids as LibriSpeech; a chapter per speaker
_DROP = re.compile(r"[.,;:!?\"()`]+")  # punctuation that is not spoken
_HYPHEN = re.compile(r"\s*-+\s*")
_ALLOWED = re.compile(r"[A-Z' ]+")
# Abbreviations are read as other words ("Mr." as "mister") or letters: "e.g.", "U.S.", "Mr.",
# initials ("J. Smith"). Sentences with them are dropped rather than mangled.
_ABBREVIATION = re.compile(
    r"\.\w|\b(?:mr|mrs|ms|dr|st|jr|sr|vs|etc|co|mt|gen|gov|rev|prof|capt|col|lt|sgt)\.|"
    r"\b(?-i:[B-HJ-Z])\.",
    re.IGNORECASE,
)


def normalize_transcript(text: str) -> str | None:
    """Upper-case `text` keeping only A-Z, apostrophe and single spaces; None if it has digits or
    other characters (a number or symbol would be read as words the transcript does not hold).

    Sentence punctuation is dropped, hyphens become spaces, apostrophes that open a word (quotes)
    are removed; abbreviations with inner dots make the sentence unusable (None).
    """
    if _ABBREVIATION.search(text):
        return None
    text = _HYPHEN.sub(" ", _DROP.sub(" ", text)).upper()
    words = [w.lstrip("'") for w in text.split()]
    text = " ".join(w for w in words if w.strip("'"))
    if not text or not _ALLOWED.fullmatch(text):
        return None
    return text


def _sentence_pools(
    sentences: list[str], needed: dict[str, int], seed: int, min_words: int, max_words: int
) -> tuple[dict[str, list[str]], int]:
    """Disjoint, seeded sentence pools per split, sized as `needed` (smaller if sentences are few:
    speakers of a split then share sentences). Returns the pools and the number dropped."""
    kept = []
    for s in sentences:
        norm = normalize_transcript(s)
        if norm is not None and min_words <= len(norm.split()) <= max_words:
            kept.append(norm)
    unique = sorted(set(kept))
    if len(unique) < len(needed):
        raise DataError(f"only {len(unique)} usable sentences for {len(needed)} splits")
    order = np.random.default_rng(seed).permutation(len(unique))
    total = sum(needed.values())
    scale = min(1.0, len(unique) / total)
    pools, start = {}, 0
    for split, n in needed.items():
        size = max(1, int(n * scale)) if n else 0
        if start + size > len(unique):
            raise DataError(f"too few usable sentences ({len(unique)}) for disjoint split pools")
        pools[split] = [unique[i] for i in order[start : start + size]]
        start += size
    return pools, len(sentences) - len(kept)


def _speaker_splits(
    speakers: list[tuple[str, float, float]], dev: int, test: int, seed: int
) -> list[str]:
    """Split of each speaker: held-out ones taken round-robin over the voices (in a seeded
    order), each from the voice's remaining speakers at random, so every voice stays in train."""
    rng = np.random.default_rng(seed)
    voices = list(dict.fromkeys(v for v, _, _ in speakers))
    remaining = {v: [i for i, s in enumerate(speakers) if s[0] == v] for v in voices}
    voice_order = [voices[i] for i in rng.permutation(len(voices))]
    splits = ["train"] * len(speakers)
    for k, split in enumerate(["test"] * test + ["dev"] * dev):
        voice = voice_order[k % len(voices)]
        if len(remaining[voice]) <= 1:
            raise DataError(
                f"{dev} dev + {test} test speakers would leave voice {voice!r} without a train "
                f"speaker: use more pitches or speeds, or fewer held-out speakers"
            )
        pick = remaining[voice].pop(int(rng.integers(len(remaining[voice]))))
        splits[pick] = split
    return splits


def synthesize(text: str, voice: str, pitch: float, speed: float, ratio: float = 1.0) -> np.ndarray:
    """Read `text` with flite: int16 (T,) at 16 kHz. `ratio` != 1 shifts the pitch by resampling
    (for voices in `_F0_IGNORED`). Raises DataError naming the voice and text if flite fails."""
    stretch = speed * ratio
    cmd = ["flite", "-voice", voice, "--setf", f"int_f0_target_mean={pitch:g}"]
    cmd += ["--setf", f"duration_stretch={stretch:g}", "-t", text.lower(), "-o", "/dev/stdout"]
    result = subprocess.run(cmd, capture_output=True, check=False)
    if result.returncode != 0 or result.stdout[:4] != b"RIFF":
        raise DataError(f"flite failed for voice {voice} on {text!r}: {result.stderr.decode()}")
    header = np.frombuffer(result.stdout[:44], np.uint8)
    rate = int(header[24:28].view("<u4")[0])
    if rate != SAMPLE_RATE:
        raise DataError(f"flite voice {voice} writes {rate} Hz, expected {SAMPLE_RATE}")
    wave = np.frombuffer(result.stdout[44:], "<i2")
    if ratio == 1.0:
        return wave.copy()
    step = Fraction(ratio).limit_denominator(64)  # play `ratio` times faster
    shifted = resample_poly(wave.astype(np.float64), step.denominator, step.numerator)
    return np.clip(np.round(shifted), -32768, 32767).astype(np.int16)


@dataclass(frozen=True)
class _Speaker:
    """A pseudo-speaker: one chapter of `texts` read by `voice` at F0 `pitch` Hz and `speed`."""

    id: str
    chapter: str
    split: str
    voice: str
    pitch: float
    speed: float
    ratio: float  # tape-speed pitch shift, for voices in _F0_IGNORED (else 1)
    texts: list[str]

    def describe(self) -> str:
        return f"{self.id} | {self.voice} | {self.pitch:g} | {self.speed:g} | {self.split}"


def _write_speaker(root: Path, speaker: _Speaker) -> int:
    """Worker: synthesize one speaker's chapter (FLAC files and trans.txt); returns samples."""
    chapter_dir = root / speaker.split / speaker.id / speaker.chapter
    chapter_dir.mkdir(parents=True)
    prefix = f"{speaker.id}-{speaker.chapter}"
    samples = 0
    for n, text in enumerate(speaker.texts):
        wave = synthesize(text, speaker.voice, speaker.pitch, speaker.speed, speaker.ratio)
        sf.write(chapter_dir / f"{prefix}-{n:04d}.flac", wave, SAMPLE_RATE, "PCM_16", format="FLAC")
        samples += len(wave)
    _write_transcripts(chapter_dir, prefix, speaker.texts)
    return samples


def _write_transcripts(chapter_dir: Path, prefix: str, texts: list[str]) -> None:
    lines = "".join(f"{prefix}-{n:04d} {t}\n" for n, t in enumerate(texts))
    (chapter_dir / f"{prefix}.trans.txt").write_text(lines)


def _plan_speakers(
    voices: list[str],
    pitches: list[float],
    speeds: list[float],
    per_speaker: int,
    dev: int,
    test: int,
    pools_for: Callable[[dict[str, int]], dict[str, list[str]]],
    seed: int,
) -> list[_Speaker]:
    """Every voice x pitch x speed speaker with its split and sentences (seeded)."""
    combos = [(v, float(p), float(s)) for v in voices for p in pitches for s in speeds]
    splits = _speaker_splits(combos, dev, test, seed)
    count = Counter(splits)
    pools = pools_for({split: count[split] * per_speaker for split in SPLITS})
    base_pitch = float(np.median(pitches))
    rng = np.random.default_rng(seed + 1)
    cursor = dict.fromkeys(SPLITS, 0)
    speakers = []
    for i, ((voice, pitch, speed), split) in enumerate(zip(combos, splits, strict=True)):
        pool = pools[split]
        # Each speaker reads the next sentences of its pool: all are read once before any repeats.
        texts = [pool[(cursor[split] + k) % len(pool)] for k in range(per_speaker)]
        cursor[split] += per_speaker
        texts = [texts[k] for k in rng.permutation(len(texts))]
        ratio = pitch / base_pitch if voice in _F0_IGNORED else 1.0
        speaker_id, chapter = str(_FIRST_SPEAKER + i), str(_FIRST_CHAPTER + i)
        speakers.append(_Speaker(speaker_id, chapter, split, voice, pitch, speed, ratio, texts))
    return speakers


def write_flite_corpus(
    out_dir: str | os.PathLike,
    sentences: list[str],
    voices: list[str],
    pitches: list[float],
    speeds: list[float],
    utterances_per_speaker: int,
    dev_speakers: int,
    test_speakers: int,
    seed: int = 0,
    workers: int = 2,
    min_words: int = 3,
    max_words: int = 14,
) -> dict:
    """Synthesize a LibriSpeech-layout corpus of voice x pitch x speed pseudo-speakers.

    Sentences are normalized (`normalize_transcript`), bounded to `min_words..max_words` words,
    deduplicated and dealt into disjoint seeded train / dev / test pools. `workers` processes run
    flite (about 15 utterances/s per core). Returns `{"splits": {split: {"utterances",
    "speakers", "seconds"}}, "sentences": {split: pool size}, "dropped_sentences": n}`. Raises
    SourceMissingError if flite is not installed.
    """
    if shutil.which("flite") is None:
        raise SourceMissingError(FLITE_PACKAGE, FLITE_PARAM, "no `flite` on PATH")
    stats: dict = {"splits": {}}

    def pools_for(needed: dict[str, int]) -> dict[str, list[str]]:
        pools, stats["dropped_sentences"] = _sentence_pools(
            sentences, needed, seed, min_words, max_words
        )
        stats["sentences"] = {split: len(pool) for split, pool in pools.items()}
        return pools

    speakers = _plan_speakers(
        voices,
        pitches,
        speeds,
        utterances_per_speaker,
        dev_speakers,
        test_speakers,
        pools_for,
        seed,
    )
    samples: Counter[str] = Counter()
    with atomic_path(out_dir) as tmp, process_pool(workers) as pool:
        tmp.mkdir(parents=True)
        header = "; ID | VOICE | F0 | STRETCH | SUBSET\n"
        (tmp / "SPEAKERS.TXT").write_text(header + "".join(f"{s.describe()}\n" for s in speakers))
        jobs = ((tmp, speaker) for speaker in speakers)
        with tqdm(total=len(speakers) * utterances_per_speaker, desc="flite", unit=" utt") as bar:
            results = ordered_map(pool, _write_speaker, jobs, window=4 * max(workers, 1))
            for speaker, n in zip(speakers, results, strict=True):
                samples[speaker.split] += n
                bar.update(len(speaker.texts))
    for split in SPLITS:
        in_split = [s for s in speakers if s.split == split]
        stats["splits"][split] = {
            "utterances": sum(len(s.texts) for s in in_split),
            "speakers": len(in_split),
            "seconds": round(samples[split] / SAMPLE_RATE, 3),
        }
    log.info("wrote flite corpus to %s: %s", out_dir, stats["splits"])
    return stats


_REAL_LINE = re.compile(r"\s*(?:<s>)?(.*?)(?:</s>)?\s*\(([^()\s]+)\)\s*")


def write_real_clips(
    src_dir: str | os.PathLike, out_dir: str | os.PathLike, split: str = "real"
) -> dict:
    """Write the LibriVox clips of `pocketsphinx-testdata` as one LibriSpeech-layout speaker.

    Source (`REAL_CLIPS_DIR`): `src_dir/<fileid>.wav` (16 kHz 16-bit mono) and
    `src_dir/transcription` lines `<s> text </s> (fileid)`. Written atomically, only
    `out_dir/<split>/<REAL_SPEAKER>/<REAL_CHAPTER>/...`: call it after `write_flite_corpus` on the
    same `out_dir` (which replaces its whole `out_dir`). Utterances are numbered in sorted fileid
    order.
    Returns `{"utterances", "seconds", "sources": {id: fileid}}`.
    """
    src_dir = Path(src_dir)
    listing = src_dir / "transcription"
    if not listing.is_file():
        raise SourceMissingError(REAL_PACKAGE, REAL_PARAM, f"no {listing}")
    clips: dict[str, str] = {}
    for number, line in enumerate(listing.read_text().splitlines(), 1):
        match = _REAL_LINE.fullmatch(line)
        if not match:
            raise DataError(f"{listing} line {number}: expected '<s> text </s> (fileid)'")
        text = normalize_transcript(match.group(1))
        if text is None:
            raise DataError(f"{listing} line {number}: transcript has characters outside A-Z '")
        clips[match.group(2)] = text
    prefix = f"{REAL_SPEAKER}-{REAL_CHAPTER}"
    stats: dict = {"utterances": len(clips), "seconds": 0.0, "sources": {}}
    with atomic_path(Path(out_dir) / split) as tmp:
        chapter_dir = tmp / REAL_SPEAKER / REAL_CHAPTER
        chapter_dir.mkdir(parents=True)
        texts = []
        for n, fileid in enumerate(sorted(clips)):
            wav = src_dir / f"{fileid}.wav"
            try:
                wave, rate = sf.read(wav, dtype="int16", always_2d=True)
            except (sf.LibsndfileError, OSError) as e:
                raise DataError(f"cannot read {wav}: {e}") from e
            wave = wave.mean(axis=1).astype(np.int16) if wave.shape[1] > 1 else wave[:, 0]
            if rate != SAMPLE_RATE:
                wave = resample_poly(wave.astype(np.float64), SAMPLE_RATE, rate)
                wave = np.clip(np.round(wave), -32768, 32767).astype(np.int16)
            uid = f"{prefix}-{n:04d}"
            sf.write(chapter_dir / f"{uid}.flac", wave, SAMPLE_RATE, "PCM_16", format="FLAC")
            texts.append(clips[fileid])
            stats["sources"][uid] = fileid
            stats["seconds"] += len(wave) / SAMPLE_RATE
        _write_transcripts(chapter_dir, prefix, texts)
    stats["seconds"] = round(stats["seconds"], 3)
    log.info("wrote %d real clips (%.1f s) to %s", len(clips), stats["seconds"], out_dir)
    return stats

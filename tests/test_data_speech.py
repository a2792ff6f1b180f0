"""Speech data: the flite corpus, the real clips, prepare_speech, and the batch helpers."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from d2v.data.audio_prepare import prepare_speech
from d2v.data.audio_shards import (
    BLANK,
    VOCAB,
    duration_subset,
    encode_transcript,
    load_audio_split,
    pad_waves,
)
from d2v.data.errors import DataError, SourceMissingError
from d2v.data.flite_corpus import (
    REAL_CLIPS_DIR,
    normalize_transcript,
    synthesize,
    write_flite_corpus,
    write_real_clips,
)
from d2v.data.librispeech import read_split
from d2v.data.meta import SpeechMeta, read_meta


def decode_labels(ids: np.ndarray) -> str:
    """The transcript of character ids (inverse of `encode_transcript`; blanks dropped)."""
    return "".join(" " if VOCAB[i] == "|" else VOCAB[i] for i in np.asarray(ids) if i != BLANK)


needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="Debian flite not installed")
needs_real = pytest.mark.skipif(
    not (REAL_CLIPS_DIR / "transcription").is_file(),
    reason="Debian pocketsphinx-testdata not installed",
)

SENTENCES = [
    "The king will read the proclamation at noon.",
    "She came down with pneumonia.",
    "He talked big all evening.",
    "These pipes carry waste water into the river.",
    "We found the money to send our sons to college.",
    "The seagulls fluttered overhead.",
    "His body was in rebellion against fatigue.",
    "A disease of frequent occurrence.",
    "The tribes like to hawk in the desert.",
    "He discovered a backup in the toilet.",
    "Don't forget to lock the door.",
    "The children played in the garden until dark.",
    "It costs 5 dollars.",  # digits: dropped
    "Mr. Smith went home.",  # abbreviation: dropped
    "Fish & chips",  # symbol: dropped
    "Too short",  # under min_words: dropped
]
FLITE_ARGS = dict(
    voices=["kal16", "rms"],  # rms takes the resampling pitch path
    pitches=[100.0, 140.0],
    speeds=[1.0],
    utterances_per_speaker=2,
    dev_speakers=1,
    test_speakers=1,
)
ID = re.compile(r"(\d+)-(\d+)-(\d{4})")


def _tree_digest(root: Path) -> str:
    digest = hashlib.md5()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    if shutil.which("flite") is None:
        pytest.skip("Debian flite not installed")
    out = tmp_path_factory.mktemp("speech") / "raw"
    return out, write_flite_corpus(out, SENTENCES, **FLITE_ARGS, workers=2)


def test_normalize_transcript() -> None:
    assert normalize_transcript("Well-known, isn't it?") == "WELL KNOWN ISN'T IT"
    assert normalize_transcript("'Quoted' words.") == "QUOTED' WORDS"
    assert normalize_transcript("Room 101") is None
    assert normalize_transcript("A café") is None
    assert normalize_transcript("Mr. Smith went home") is None


def test_missing_sources_name_the_package_and_param(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SourceMissingError, match=r"Debian package flite.*data\.speech\.source"):
        write_flite_corpus(tmp_path / "raw", SENTENCES, **FLITE_ARGS)
    with pytest.raises(SourceMissingError, match=r"pocketsphinx-testdata.*real_clips_dir"):
        write_real_clips(tmp_path / "nowhere", tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


@needs_flite
def test_flite_corpus_layout_and_splits(corpus: tuple[Path, dict]) -> None:
    out, stats = corpus
    assert stats["dropped_sentences"] == 4
    speakers, sentences = {}, {}
    for split in ("train", "dev", "test"):
        utterances, skipped = read_split(out / split)
        assert skipped["count"] == 0
        assert len(utterances) == stats["splits"][split]["utterances"]
        for u in utterances:
            assert ID.fullmatch(u.id) and u.id.startswith(f"{u.speaker}-{u.chapter}-")
            assert u.path == out / split / u.speaker / u.chapter / f"{u.id}.flac"
            assert re.fullmatch(r"[A-Z' ]+", u.transcript)
            info = sf.info(str(u.path))
            assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        speakers[split] = {u.speaker for u in utterances}
        sentences[split] = {u.transcript for u in utterances}
    assert [len(speakers[s]) for s in ("train", "dev", "test")] == [2, 1, 1]
    for a, b in (("train", "dev"), ("train", "test"), ("dev", "test")):
        assert not speakers[a] & speakers[b]
        assert not sentences[a] & sentences[b]
    rows = [line.split(" | ") for line in (out / "SPEAKERS.TXT").read_text().splitlines()[1:]]
    assert {voice for _, voice, _, _, split in rows if split == "train"} == {"kal16", "rms"}


@needs_flite
def test_flite_corpus_is_byte_identical(corpus: tuple[Path, dict], tmp_path: Path) -> None:
    out, _ = corpus
    write_flite_corpus(tmp_path / "again", SENTENCES, **FLITE_ARGS, workers=1)
    assert _tree_digest(tmp_path / "again") == _tree_digest(out)


@needs_flite
def test_rms_pitch_changes_the_audio() -> None:
    low = synthesize("hello there", "rms", 100.0, 1.0, ratio=0.8)
    high = synthesize("hello there", "rms", 140.0, 1.0, ratio=1.2)
    assert low.dtype == np.int16 and abs(len(low) - len(high)) < 0.05 * len(low)
    assert not np.array_equal(low[: len(high)], high[: len(low)])


@needs_real
def test_real_clips(tmp_path: Path) -> None:
    stats = write_real_clips(REAL_CLIPS_DIR, tmp_path)
    utterances, skipped = read_split(tmp_path / "real")
    assert len(utterances) == stats["utterances"] == 5 and skipped["count"] == 0
    assert 20 < stats["seconds"] < 30
    assert utterances[1].transcript == "HE WAS NOT AN ILL DISPOSED YOUNG MAN"
    assert sf.info(str(utterances[0].path)).samplerate == 16000


def _tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.2 * np.sin(2 * np.pi * freq * t) + 0.1).astype(np.float32)  # with a DC offset


def _write_extra(raw: Path) -> None:
    """A raw subset with resampling cases and one example of every kind of bad entry."""
    chapter = raw / "extra" / "500" / "1"
    chapter.mkdir(parents=True)
    sf.write(chapter / "500-1-0000.wav", _tone(1.0, 8000), 8000, "PCM_16")
    sf.write(chapter / "500-1-0001.wav", _tone(0.5, 22050), 22050, "PCM_16")
    (chapter / "500-1-0002.flac").write_bytes(b"not audio at all" * 10)
    sf.write(chapter / "500-1-0003.wav", np.zeros(0, np.int16), 16000, "PCM_16")
    sf.write(chapter / "500-1-0004.wav", np.zeros(800, np.int16), 16000, "PCM_16")
    sf.write(chapter / "500-1-0006.flac", _tone(0.5, 16000), 16000, "PCM_16")
    sf.write(chapter / "500-1-0007.wav", _tone(0.5, 16000), 16000, "PCM_16")
    sf.write(chapter / "500-1-0008.wav", _tone(21.0, 8000), 8000, "PCM_16")
    (chapter / "500-1.trans.txt").write_text(
        "500-1-0000 A LOW TONE\n"
        "500-1-0001 A HIGH TONE\n"
        "500-1-0002 GARBAGE\n"
        "500-1-0003 NOTHING\n"
        "500-1-0004 SILENCE\n"
        "500-1-0005 NO AUDIO FOR THIS LINE\n"
        "500-1-0007 ROOM 101\n"
        "500-1-0008 FAR TOO LONG\n"
    )  # 0006 has audio and no line


@pytest.fixture(scope="module")
def prepared(corpus: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw, _ = corpus
    _write_extra(raw)
    out = tmp_path_factory.mktemp("speech") / "prepared"
    splits = {"train": ["train"], "dev": ["dev"], "test": ["test"], "extra": ["extra"]}
    prepare_speech(raw, out, splits, max_seconds=20.0, workers=2, source="flite")
    return out


def test_prepare_meta_and_skips(prepared: Path) -> None:
    meta = read_meta(prepared, SpeechMeta)
    assert meta.sample_rate == 16000 and meta.vocab == VOCAB
    assert meta.dev_split == "dev" and meta.eval_splits == ["test", "extra"]
    assert meta.splits["train"]["utterances"] == 4 and meta.splits["train"]["speakers"] == 2
    assert meta.splits["extra"]["utterances"] == 2
    reasons = ["audio_without_transcript", "empty", "silent", "too_long", "transcript_chars"]
    reasons += ["transcript_without_audio", "unreadable"]
    assert meta.skipped["by_reason"] == dict.fromkeys(reasons, 1)
    assert meta.skipped["count"] == 7
    assert "extra/500/1/500-1-0002.flac (unreadable)" in meta.skipped["files"]


def test_prepared_audio_is_resampled_normalized_and_sorted(prepared: Path) -> None:
    extra = load_audio_split(prepared, "extra")
    by_id = {uid: i for i, uid in enumerate(extra.ids)}
    assert extra.lengths[by_id["500-1-0000"]] == 16000  # 1 s at 8 kHz -> 16 kHz
    assert extra.lengths[by_id["500-1-0001"]] == 8000  # 0.5 s at 22.05 kHz -> 16 kHz
    wave = extra.wave(by_id["500-1-0000"])
    assert np.argmax(np.abs(np.fft.rfft(wave))) == 440  # 1 Hz bins: the tone kept its pitch
    for name in ("train", "test", "extra"):
        split = load_audio_split(prepared, name)
        assert np.all(np.diff(split.lengths) >= 0)
        for i in range(len(split)):
            w = split.wave(i)
            assert w.dtype == np.float32
            assert abs(w.mean()) < 1e-2 and abs(w.std() - 1) < 1e-2


def test_labels_round_trip(prepared: Path) -> None:
    assert VOCAB[:3] == ["<blank>", "|", "'"] and len(VOCAB) == 29
    assert decode_labels(encode_transcript("DON'T STOP")) == "DON'T STOP"
    assert encode_transcript("A B").tolist() == [3, 1, 4]
    split = load_audio_split(prepared, "train")
    for i in range(len(split)):
        assert split.labels(i).dtype == np.int64
        assert decode_labels(split.labels(i)) == split.transcripts[i]
    assert split.speakers.shape == (len(split),) and set(split.speakers.tolist()) == {0, 1}


def test_on_corrupt_fail_names_the_file(tmp_path: Path) -> None:
    chapter = tmp_path / "raw" / "bad" / "7" / "1"
    chapter.mkdir(parents=True)
    (chapter / "7-1-0000.flac").write_bytes(b"\x00garbage" * 50)
    (chapter / "7-1.trans.txt").write_text("7-1-0000 HELLO\n")
    with pytest.raises(DataError, match=r"7-1-0000\.flac"):
        prepare_speech(tmp_path / "raw", tmp_path / "out", {"bad": ["bad"]}, on_corrupt="fail")
    assert not (tmp_path / "out").exists()
    (chapter / "7-1.trans.txt").write_text("7-1-0000 HELLO\n7-1-0001 NO AUDIO\n")
    with pytest.raises(DataError, match=r"7-1\.trans\.txt line 2"):
        read_split(tmp_path / "raw" / "bad", on_corrupt="fail")


def test_pad_waves(prepared: Path) -> None:
    split = load_audio_split(prepared, "train")
    idx = np.array([3, 0, 2])
    waves, lengths = pad_waves(split, idx)
    assert (
        waves.shape == (3, split.lengths[idx].max())
        and lengths.tolist() == split.lengths[idx].tolist()
    )
    for b, i in enumerate(idx):
        assert np.array_equal(waves[b, : lengths[b]].numpy(), split.wave(i))
        assert not waves[b, lengths[b] :].any()
    short = int(split.lengths.min()) // 2
    waves, lengths = pad_waves(split, idx, max_samples=short)
    assert waves.shape == (3, short) and lengths.tolist() == [short] * 3
    assert np.array_equal(waves[1].numpy(), split.wave(0)[:short])  # no rng: from the start
    waves, _ = pad_waves(split, idx, max_samples=short, rng=np.random.default_rng(0))
    for b, i in enumerate(idx):
        full = split.wave(i)
        starts = np.flatnonzero(full == waves[b, 0].item())
        assert any(np.array_equal(full[s : s + short], waves[b].numpy()) for s in starts)
    long = int(split.lengths.max()) + 100
    waves, lengths = pad_waves(split, idx, max_samples=long)
    assert waves.shape == (3, long) and lengths.tolist() == split.lengths[idx].tolist()


def test_duration_subset_is_balanced_and_seeded() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(16000, 16000 * 15, size=2000)
    speakers = rng.integers(0, 40, size=2000) * 7 + 3  # arbitrary speaker ids
    target = 600.0  # Libri-light's 10 minutes
    subset = duration_subset(lengths, speakers, target, 16000, seed=1)
    assert np.all(np.diff(subset) > 0)
    total = lengths[subset].sum() / 16000
    assert target <= total < target + 15
    counts = np.bincount(np.unique(speakers, return_inverse=True)[1][subset], minlength=40)
    assert counts.max() - counts.min() <= 1  # round-robin over speakers
    assert np.array_equal(subset, duration_subset(lengths, speakers, target, 16000, seed=1))
    assert not np.array_equal(subset, duration_subset(lengths, speakers, target, 16000, seed=2))
    everything = duration_subset(lengths, speakers, 1e9, 16000, seed=1)
    assert np.array_equal(everything, np.arange(2000))

"""LibriSpeech (OpenSLR resource 12): download, safe extraction, and the reader of its layout.

Archives `<subset>.tar.gz` hold `LibriSpeech/<subset>/<speaker>/<chapter>/...` plus the corpus
metadata `LibriSpeech/{CHAPTERS,SPEAKERS,BOOKS,LICENSE,README}.TXT`. Written, atomically as a whole:

    out_dir/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<NNNN>.flac   16 kHz mono FLAC
    out_dir/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt     `ID TRANSCRIPT` lines
    out_dir/*.TXT                                                          corpus metadata

The embedded flite corpus (`flite_corpus.py`) is written in the same layout, so `read_split`
serves both.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from d2v.atomic import atomic_path
from d2v.data.archive import extract_tar_fileobj
from d2v.data.errors import DataError
from d2v.data.http import download

log = logging.getLogger(__name__)

LIBRISPEECH_SUBSETS: tuple[str, ...] = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)
# From https://www.openslr.org/resources/12/md5sum.txt (the same sums are pinned in several
# independent LibriSpeech loaders).
LIBRISPEECH_MD5: dict[str, str] = {
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
}
BASE_URL = "https://www.openslr.org/resources/12"
AUDIO_SUFFIXES = (".flac", ".wav")
ON_CORRUPT = ("skip", "fail")
_ARCHIVE_ROOT = "LibriSpeech"


@dataclass(frozen=True)
class Utterance:
    """One transcribed recording. `id` is `<speaker>-<chapter>-<NNNN>`; transcript upper-case."""

    id: str
    speaker: str
    chapter: str
    path: Path
    transcript: str


def _move_subset(extracted: Path, subset: str, out: Path, archive: Path) -> None:
    """Move `LibriSpeech/<subset>` (and the metadata files) from a scratch folder into `out`."""
    root = extracted / _ARCHIVE_ROOT
    if not (root / subset).is_dir():
        raise DataError(f"{archive} holds no {_ARCHIVE_ROOT}/{subset}/ folder")
    (root / subset).rename(out / subset)
    for extra in sorted(root.iterdir()):
        if extra.is_file():
            os.replace(extra, out / extra.name)  # the same files in every archive
    shutil.rmtree(extracted)


def download_librispeech(
    base_url: str,
    subsets: list[str],
    cache_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    md5: dict[str, str | None] | None = None,
) -> dict:
    """Download `<base_url>/<subset>.tar.gz` into `cache_dir` and extract each into `out_dir`.

    Downloads resume and are verified against `LIBRISPEECH_MD5`; `md5` overrides a subset's sum
    (None skips its check). Extraction refuses unsafe entries. `out_dir` is written atomically and
    replaced as a whole. Returns `{subset: {"archive", "md5", "speakers", "chapters"}}`.
    Raises DataError (naming the url or file) on a download, checksum or archive problem.
    """
    unknown = [s for s in subsets if s not in LIBRISPEECH_SUBSETS]
    if unknown:
        raise DataError(f"unknown LibriSpeech subsets {unknown}; known: {LIBRISPEECH_SUBSETS}")
    overrides = md5 or {}
    cache_dir = Path(cache_dir)
    stats: dict = {}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        for subset in subsets:
            expected = overrides[subset] if subset in overrides else LIBRISPEECH_MD5[subset]
            url = f"{base_url.rstrip('/')}/{subset}.tar.gz"
            archive = download(url, cache_dir / f"{subset}.tar.gz", md5=expected, desc=subset)
            scratch = tmp / f".extract-{subset}"
            with open(archive, "rb") as f:
                extract_tar_fileobj(f, scratch, archive=str(archive), progress=True)
            _move_subset(scratch, subset, tmp, archive)
            speakers = [p for p in (tmp / subset).iterdir() if p.is_dir()]
            stats[subset] = {
                "archive": str(archive),
                "md5": expected,
                "speakers": len(speakers),
                "chapters": sum(1 for s in speakers for c in s.iterdir() if c.is_dir()),
            }
            log.info("extracted %s: %s", subset, stats[subset])
    return stats


class SkipLog:
    """Counts skipped files by reason, or raises at the first one when `on_corrupt="fail"`.

    Files are recorded as `<path relative to root> (<reason>)`.
    """

    def __init__(self, on_corrupt: str, root: Path) -> None:
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
        self.fail = on_corrupt == "fail"
        self.root = root
        self.by_reason: Counter[str] = Counter()
        self.files: list[str] = []

    def add(self, path: Path, reason: str, message: str) -> None:
        if self.fail:
            raise DataError(message)
        log.debug("skipping: %s", message)
        self.by_reason[reason] += 1
        self.files.append(f"{path.relative_to(self.root).as_posix()} ({reason})")

    def merge(self, stats: dict) -> None:
        """Add the skipped-stats of another log with the same root."""
        self.by_reason.update(stats["by_reason"])
        self.files.extend(stats["files"])

    def stats(self, listed: int | None = None) -> dict:
        """`{"count", "by_reason", "files"}`, the first `listed` files (all if None)."""
        return {
            "count": sum(self.by_reason.values()),
            "by_reason": dict(sorted(self.by_reason.items())),
            "files": self.files[:listed],
        }


def _read_chapter(chapter_dir: Path, speaker: str, skips: SkipLog) -> list[Utterance]:
    audio = {p.stem: p for p in sorted(chapter_dir.iterdir()) if p.suffix.lower() in AUDIO_SUFFIXES}
    transcripts: dict[str, tuple[str, Path]] = {}
    for trans in sorted(chapter_dir.glob("*.trans.txt")):
        with open(trans, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                uid, _, text = line.strip().partition(" ")
                where = f"{trans} line {number}"
                if not text.strip():
                    skips.add(trans, "bad_transcript_line", f"{where}: no transcript after {uid}")
                elif uid not in audio:
                    skips.add(trans, "transcript_without_audio", f"{where}: no audio for {uid}")
                else:
                    transcripts[uid] = (" ".join(text.split()), audio[uid])
    utterances = []
    for uid, path in audio.items():
        if uid not in transcripts:
            skips.add(path, "audio_without_transcript", f"{path}: no transcript line for {uid}")
            continue
        text, _ = transcripts[uid]
        utterances.append(Utterance(uid, speaker, chapter_dir.name, path, text))
    return utterances


def read_split(
    split_dir: str | os.PathLike, on_corrupt: str = "skip"
) -> tuple[list[Utterance], dict]:
    """All transcribed utterances under `split_dir/<speaker>/<chapter>/`, sorted by id.

    A transcript line without audio, audio without a transcript line, or a line with no text is
    skipped and counted (`on_corrupt="skip"`), or raises DataError naming the file and line
    (`"fail"`). Returns the utterances and `{"count", "by_reason", "files"}` of the skipped, the
    files relative to `split_dir`'s parent.
    """
    split_dir = Path(split_dir)
    if not split_dir.is_dir():
        raise DataError(f"speech split folder {split_dir} not found")
    skips = SkipLog(on_corrupt, split_dir.parent)
    utterances: list[Utterance] = []
    for speaker_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if speaker_dir.name.startswith("."):
            continue
        for chapter_dir in sorted(p for p in speaker_dir.iterdir() if p.is_dir()):
            utterances.extend(_read_chapter(chapter_dir, speaker_dir.name, skips))
    utterances.sort(key=lambda u: u.id)
    return utterances, skips.stats()

"""The text pretraining corpus: the embedded one (Bible + WordNet) and a reader for a user's own.

Embedded layout, written atomically as a whole, one document per line (UTF-8, no tabs):

    <out_dir>/corpus/bible-web.txt    one line per chapter of the WEB: its verses joined by spaces
    <out_dir>/corpus/bible-kjv.txt    the same for the KJV
    <out_dir>/corpus/wordnet.txt      one line per WordNet example sentence

A user's corpus (`read_corpus`) is a `.txt` file or a folder of them (read in sorted path order),
either one document per line or paragraphs separated by blank lines.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from d2v.atomic import atomic_path
from d2v.data.bible import Verse, export_bible
from d2v.data.errors import DataError
from d2v.data.lines import MAX_LINE_BYTES, bounded_lines
from d2v.data.wordnet import WORDNET_DIR, wordnet_examples

log = logging.getLogger(__name__)

CORPUS_FORMATS = ("auto", "lines", "paragraphs")
_DETECT_LINES = 1000  # `auto` decides from this many first lines of each file
_SHOWN_BAD_LINES = 5


def chapter_documents(verses: list[Verse]) -> list[str]:
    """One document per chapter: its verses' texts joined by spaces, in the verses' order."""
    key = lambda v: (v.book, v.chapter)  # noqa: E731
    return [" ".join(v.text for v in group) for _, group in itertools.groupby(verses, key)]


def write_embedded_corpus(
    out_dir: str | os.PathLike,
    modules: tuple[str, ...] = ("WEB", "KJV"),
    wordnet_dir: str | os.PathLike | None = WORDNET_DIR,
    bibles: dict[str, list[Verse]] | None = None,
) -> dict:
    """Write the embedded corpus to `<out_dir>/corpus/` (see the module docstring).

    `wordnet_dir=None` leaves WordNet out. `bibles`: verses already exported, by module name, to
    save exporting them again. Returns {documents, words, files: {name: {documents, words}}}.
    """
    bibles = bibles or {}
    files: dict[str, list[str]] = {}
    for module in modules:
        verses = bibles.get(module) or export_bible(module)
        files[f"bible-{module.lower()}.txt"] = chapter_documents(verses)
    if wordnet_dir is not None:
        files["wordnet.txt"] = wordnet_examples(wordnet_dir, param="data.text.wordnet_dir")
    stats: dict = {"documents": 0, "words": 0, "files": {}}
    with atomic_path(Path(out_dir) / "corpus") as tmp:
        tmp.mkdir()
        for name, documents in files.items():
            with open(tmp / name, "w", encoding="utf-8") as f:
                for document in documents:
                    f.write(" ".join(document.split()) + "\n")
            words = sum(len(d.split()) for d in documents)
            stats["files"][name] = {"documents": len(documents), "words": words}
            stats["documents"] += len(documents)
            stats["words"] += words
    log.info("wrote embedded corpus: %d documents, %d words", stats["documents"], stats["words"])
    return stats


def corpus_files(path: str | os.PathLike) -> list[Path]:
    """`path` itself if it is a file, else the `.txt` files under it in sorted order."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataError(f"corpus path {path} does not exist")
    files = sorted(p for p in path.rglob("*.txt") if p.is_file())
    if not files:
        raise DataError(f"no .txt files under corpus folder {path}")
    return files


def _detect_paragraphs(path: Path) -> bool:
    """True if a blank line separates non-blank ones within the file's first lines."""
    seen_text = seen_blank_after_text = False
    for _, raw in itertools.islice(bounded_lines(path), _DETECT_LINES):
        if raw is None or raw.strip():
            if seen_blank_after_text:
                return True
            seen_text = True
        elif seen_text:
            seen_blank_after_text = True
    return False


def _read_lines(path: Path, on_bad_line: str, stats: dict) -> Iterator[str | None]:
    """Decoded lines of `path`, stripped; None for a blank line; undecodable lines skipped."""
    for number, raw in bounded_lines(path):
        try:
            if raw is None:
                raise ValueError(f"a line over {MAX_LINE_BYTES} bytes")
            line = raw.decode("utf-8")
        except ValueError as e:  # UnicodeDecodeError is one
            why = getattr(e, "reason", None)
            why = f"bytes that are not UTF-8 ({why})" if why else str(e)
            where = f"{path}:{number}: {why}"
            if on_bad_line == "fail":
                raise DataError(f"bad corpus line at {where}") from None
            stats["skipped_lines"] = stats.get("skipped_lines", 0) + 1
            shown = stats.setdefault("bad_lines", [])
            if len(shown) < _SHOWN_BAD_LINES:
                shown.append(where)
            continue
        line = " ".join(line.split())
        yield line or None


def read_corpus(
    path: str | os.PathLike,
    fmt: str = "auto",
    on_bad_line: str = "skip",
    stats: dict | None = None,
) -> Iterator[str]:
    """Documents of a plain-text corpus (a file or a folder of `.txt`), whitespace collapsed.

    `fmt`: "lines" (one document per line), "paragraphs" (documents separated by blank lines) or
    "auto" (per file: paragraphs if a blank line separates text in its first 1000 lines). Lines
    that are not UTF-8 are skipped and counted into `stats` (`skipped_lines`, `bad_lines`: the
    first few as file:line), or with `on_bad_line="fail"` raise DataError naming file and line.
    `stats` also gets `files` and `documents`.
    """
    if fmt not in CORPUS_FORMATS:
        raise ValueError(f"fmt must be one of {CORPUS_FORMATS}, not {fmt!r}")
    if on_bad_line not in ("skip", "fail"):
        raise ValueError(f"on_bad_line must be 'skip' or 'fail', not {on_bad_line!r}")
    stats = {} if stats is None else stats
    files = corpus_files(path)
    stats["files"] = len(files)
    stats.setdefault("documents", 0)
    for file in files:
        paragraphs = fmt == "paragraphs" or (fmt == "auto" and _detect_paragraphs(file))
        buffer: list[str] = []
        for line in _read_lines(file, on_bad_line, stats):
            if not paragraphs:
                if line:
                    stats["documents"] += 1
                    yield line
            elif line:
                buffer.append(line)
            elif buffer:
                stats["documents"] += 1
                yield " ".join(buffer)
                buffer = []
        if buffer:
            stats["documents"] += 1
            yield " ".join(buffer)
    if stats.get("skipped_lines"):
        log.warning("corpus %s: skipped %d unusable lines", path, stats["skipped_lines"])
    if not stats["documents"]:
        raise DataError(
            f"corpus {path} has no documents (empty, or no line is usable UTF-8: "
            f"{stats.get('skipped_lines', 0)} skipped)"
        )

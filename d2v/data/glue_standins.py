"""Embedded GLUE stand-ins: small real-text tasks written in the real GLUE TSV layouts.

Written (each task folder atomically) as `<out_dir>/glue/<task>/{train,dev}.tsv` with the exact
column layout of the real task (see `glue.py`), so `read_glue_tsv` reads stand-ins and GLUE alike,
plus `<task>/standin.json` saying how the task was built and whether its labels are synthetic.

- sst2: movie-review snippets rated by 20+ people on -4..+4 (Hutto & Gilbert, ICWSM 2014; in the
  `vaderSentiment` 3.3.2 source package on PyPI, MIT). Label 1 if the mean rating > 0; snippets
  with |rating| < 1 are dropped as unclear. Human labels. Columns: sentence, label.
- stsb: the same snippets, every one kept, the mean rating mapped linearly from [-4, 4] to STS-B's
  [0, 5] as a regression target. STS-B is a pair task: the snippet is sentence1 and sentence2 is
  left empty (the reader makes that a single-sentence example). Columns as STS-B.
- mrpc: verse pairs from two English Bibles: the same verse in WEB and KJV is a paraphrase (1), a
  WEB verse and a different KJV verse of the same chapter are not (0); which Bible comes first is
  random. Balanced. Columns as MRPC (Quality, #1 ID, #2 ID, #1 String, #2 String).
- cola (synthetic labels): real WordNet example sentences, half kept (1), half corrupted (0) by
  swapping two adjacent words, dropping a word or repeating one. Balanced (real CoLA is about 70%
  acceptable). Columns as CoLA, no header (source, label, `*` if 0, sentence).

Everything is seeded and deterministic. Sentences are split into train and dev before examples
are built (snippets and WordNet sentences individually, verses by chapter), and no sentence text
occurs in both splits.
"""

from __future__ import annotations

import io
import json
import logging
import os
import random
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from d2v.atomic import atomic_path
from d2v.data.archive import verify_md5
from d2v.data.bible import Verse, export_bible
from d2v.data.errors import DataError
from d2v.data.wordnet import WORDNET_DIR, wordnet_examples

log = logging.getLogger(__name__)

STANDIN_TASKS = ("sst2", "stsb", "mrpc", "cola")
VADER_VERSION = "3.3.2"
VADER_SDIST = f"vaderSentiment-{VADER_VERSION}.tar.gz"
# md5 of the sdist pip fetched from PyPI in 2024 (sha256 5d7c06e0...849632f9, checked by pip).
VADER_MD5 = "a04f43dfcc57119bcabaa12f356c8c40"
VADER_INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"
VADER_MOVIES = "hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt"
SST2_MIN_ABS_RATING = 1.0  # |mean rating| below this is too mixed to call positive or negative
RATING_RANGE = (-4.0, 4.0)
COLA_WORDS = (4, 25)  # WordNet examples kept for CoLA: this many words (inclusive)
MRPC_MIN_WORDS = 5  # shorter verses ("Jesus wept.") make trivial pairs


@dataclass(frozen=True)
class Snippet:
    id: str
    rating: float  # mean human rating, -4 (very negative) .. +4 (very positive)
    text: str


def fetch_vader(cache_dir: str | os.PathLike, md5: str | None = VADER_MD5) -> Path:
    """The vaderSentiment 3.3.2 sdist in `cache_dir`, downloaded with pip if not already there.

    Runs `python -m pip download vaderSentiment==3.3.2 --no-deps --no-binary :all:` into a
    temporary folder and moves the sdist into place, so a cut-off download leaves nothing. The
    sdist (cached or new) must have `md5` (None skips the check).
    """
    cache_dir = Path(cache_dir)
    sdist = cache_dir / VADER_SDIST
    if not sdist.is_file():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".pip-") as tmp:
            cmd = [sys.executable, "-m", "pip", "download", f"vaderSentiment=={VADER_VERSION}"]
            cmd += ["--no-deps", "--no-binary", ":all:", "-d", tmp]
            log.info("downloading %s with pip", VADER_SDIST)
            try:
                subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600)
            except subprocess.CalledProcessError as e:
                tail = (e.stderr or "").strip()[-500:]
                raise DataError(f"`{' '.join(cmd)}` failed (needs PyPI access): {tail}") from e
            fetched = Path(tmp) / VADER_SDIST
            if not fetched.is_file():
                raise DataError(f"pip download did not produce {VADER_SDIST} in {tmp}")
            os.replace(fetched, sdist)
    else:
        log.info("%s already in %s: not downloaded again", VADER_SDIST, cache_dir)
    verify_md5(sdist, md5)
    return sdist


def _member_bytes(tar: tarfile.TarFile, suffix: str, archive: str) -> bytes:
    """The content of the one regular file in `tar` whose name ends with `suffix`."""
    for member in tar.getmembers():
        if member.isfile() and (member.name == suffix or member.name.endswith("/" + suffix)):
            data = tar.extractfile(member)
            assert data is not None
            return data.read()
    raise DataError(f"{archive} has no {suffix}")


def read_vader_snippets(sdist: str | os.PathLike) -> tuple[list[Snippet], dict]:
    """The ~10.6k movie-review snippets from the sdist's inner ICWSM 2014 tarball (read in memory).

    File format: `id <tab> mean rating <tab> text`, CRLF lines. Lines that are not UTF-8, lack a
    field or have a rating outside [-4, 4] are skipped and counted. Returns (snippets, stats).
    """
    try:
        with tarfile.open(sdist) as outer:
            inner_bytes = _member_bytes(outer, VADER_INNER, str(sdist))
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            raw = _member_bytes(inner, VADER_MOVIES, f"{sdist}:{VADER_INNER}")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"cannot read {sdist}: {e}") from e
    snippets: list[Snippet] = []
    skipped = 0
    low, high = RATING_RANGE
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            sid, rating_text, text = line.decode("utf-8").rstrip("\r").split("\t", 2)
            rating = float(rating_text)
            text = " ".join(text.split())
            if not (low <= rating <= high and text):
                raise ValueError(f"rating {rating} or empty text")
        except ValueError as e:  # UnicodeDecodeError is a ValueError
            skipped += 1
            log.warning("%s:%s line %d skipped: %s", sdist, VADER_MOVIES, number, e)
            continue
        snippets.append(Snippet(sid, rating, text))
    return snippets, {"snippets": len(snippets), "skipped": skipped}


def _split(items: list, dev_size: int, seed: int, tag: str) -> tuple[list, list]:
    """A seeded (train, dev) split of `items`; dev gets `dev_size` (at most half)."""
    order = list(items)
    random.Random(f"{seed}:{tag}").shuffle(order)
    n_dev = min(dev_size, len(order) // 2)
    return order[n_dev:], order[:n_dev]


def _unique_texts(snippets: list[Snippet]) -> list[Snippet]:
    seen: set[str] = set()
    out = []
    for s in snippets:
        if s.text not in seen:
            seen.add(s.text)
            out.append(s)
    return out


def _write_task(out_dir: Path, task: str, files: dict[str, list[str]], info: dict) -> None:
    with atomic_path(out_dir / "glue" / task) as tmp:
        tmp.mkdir()
        for split, lines in files.items():
            (tmp / f"{split}.tsv").write_text("".join(line + "\n" for line in lines), "utf-8")
        (tmp / "standin.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _clean(text: str) -> str:
    return " ".join(text.split())  # no tabs or newlines inside a TSV field


def sst2_rows(snippets: list[Snippet]) -> list[str]:
    rows = [f"{_clean(s.text)}\t{int(s.rating > 0)}" for s in snippets]
    return [r for r, s in zip(rows, snippets, strict=True) if abs(s.rating) >= SST2_MIN_ABS_RATING]


def stsb_rows(snippets: list[Snippet]) -> list[str]:
    low, high = RATING_RANGE
    rows = []
    for i, s in enumerate(snippets):
        score = min(5.0, max(0.0, (s.rating - low) / (high - low) * 5.0))
        meta = f"{i}\tmovie-review\thutto_ICWSM_2014\t2014\t{s.id}\tvader\tnone"
        rows.append(f"{meta}\t{_clean(s.text)}\t\t{score:.4f}")
    return rows


def mrpc_rows(web: list[Verse], kjv: list[Verse], size: int, rng: random.Random) -> list[str]:
    """Balanced MRPC rows from verses present in both Bibles; each verse used at most once."""
    kjv_by_key = {(v.book, v.chapter, v.verse): v for v in kjv}
    chapters: dict[tuple[str, int], list[tuple[Verse, Verse]]] = {}
    for w in web:
        k = kjv_by_key.get((w.book, w.chapter, w.verse))
        if k is not None and min(len(w.text.split()), len(k.text.split())) >= MRPC_MIN_WORDS:
            chapters.setdefault((w.book, w.chapter), []).append((w, k))
    positives, negatives = [], []
    for pairs in chapters.values():
        pairs = list(pairs)
        rng.shuffle(pairs)
        while len(pairs) >= 3:  # one paraphrase from one verse, one non-paraphrase from two
            w, k = pairs.pop()
            positives.append((1, w, k))
            (w1, _), (_, k2) = pairs.pop(), pairs.pop()
            negatives.append((0, w1, k2))
    rng.shuffle(positives)
    rng.shuffle(negatives)
    half = min(size // 2, len(positives), len(negatives))
    chosen = positives[:half] + negatives[:half]
    rng.shuffle(chosen)
    rows = []
    for label, w, k in chosen:
        a, b = (w, k) if rng.random() < 0.5 else (k, w)
        ida = f"{a.module}.{a.book.replace(' ', '')}.{a.chapter}.{a.verse}"
        idb = f"{b.module}.{b.book.replace(' ', '')}.{b.chapter}.{b.verse}"
        rows.append(f"{label}\t{ida}\t{idb}\t{_clean(a.text)}\t{_clean(b.text)}")
    return rows


def corrupt(sentence: str, rng: random.Random) -> str | None:
    """`sentence` made ungrammatical by one edit (swap adjacent words, drop or repeat a word);
    None if every tried edit left it unchanged."""
    words = sentence.split()
    for _ in range(10):
        op = rng.choice(("swap", "drop", "repeat"))
        i = rng.randrange(len(words) - 1 if op == "swap" else len(words))
        edited = list(words)
        if op == "swap":
            edited[i], edited[i + 1] = edited[i + 1], edited[i]
        elif op == "drop":
            del edited[i]
        else:
            edited.insert(i, edited[i])
        if edited != words:
            return " ".join(edited)
    return None


def cola_rows(sentences: list[str], size: int, rng: random.Random, real: set[str]) -> list[str]:
    """Balanced CoLA rows: the first half of `sentences` kept, the second half corrupted."""
    sentences = sentences[:size]
    half = len(sentences) // 2
    rows = [f"wn\t1\t\t{_clean(s)}" for s in sentences[:half]]
    for s in sentences[half:]:
        bad = corrupt(s, rng)
        if bad is not None and bad not in real:
            rows.append(f"wn\t0\t*\t{_clean(bad)}")
    rng.shuffle(rows)
    return rows


def _drop_shared(train: list[str], dev: list[str], text_fields: list[int]) -> list[str]:
    """Dev rows none of whose texts occur in train (repeated verses, duplicated snippets)."""
    seen = {row.split("\t")[i] for row in train for i in text_fields} - {""}
    return [r for r in dev if not any(r.split("\t")[i] in seen for i in text_fields)]


def write_glue_standins(
    out_dir: str | os.PathLike,
    vader_cache: str | os.PathLike,
    seed: int = 0,
    wordnet_dir: str | os.PathLike = WORDNET_DIR,
    tasks: tuple[str, ...] = STANDIN_TASKS,
    bibles: dict[str, list[Verse]] | None = None,
    dev_size: int = 1000,
    mrpc_train_size: int = 4000,
    cola_train_size: int = 8000,
    vader_md5: str | None = VADER_MD5,
) -> dict:
    """Write the stand-in tasks (see the module docstring) to `<out_dir>/glue/<task>/`.

    `vader_cache`: folder for the vaderSentiment sdist (`fetch_vader`). `bibles`: WEB and KJV
    verses already exported, by module name. Returns {task: {split: rows, ...}, "vader": stats}.
    """
    unknown = set(tasks) - set(STANDIN_TASKS)
    if unknown:
        raise DataError(f"no embedded stand-in for {sorted(unknown)}; have {STANDIN_TASKS}")
    out_dir = Path(out_dir)
    stats: dict = {}
    common = {"standin": True, "seed": seed}
    if {"sst2", "stsb"} & set(tasks):
        stats.update(_write_vader_tasks(out_dir, tasks, vader_cache, vader_md5, dev_size, common))
    if "mrpc" in tasks:
        stats["mrpc"] = _write_mrpc(out_dir, bibles or {}, mrpc_train_size, dev_size, common)
    if "cola" in tasks:
        stats["cola"] = _write_cola(out_dir, wordnet_dir, cola_train_size, dev_size, common)
    log.info("wrote GLUE stand-ins: %s", {k: v for k, v in stats.items() if k != "vader"})
    return stats


def _write_vader_tasks(
    out_dir: Path,
    tasks: tuple[str, ...],
    vader_cache: str | os.PathLike,
    vader_md5: str | None,
    dev_size: int,
    common: dict,
) -> dict:
    """SST-2 and STS-B from vaderSentiment's rated movie snippets; their stats and the read's."""
    stats: dict = {}
    seed = common["seed"]
    snippets, stats["vader"] = read_vader_snippets(fetch_vader(vader_cache, vader_md5))
    train, dev = _split(_unique_texts(snippets), dev_size, seed, "vader")
    source = f"vaderSentiment {VADER_VERSION} sdist, {VADER_INNER}:{VADER_MOVIES}"
    if "sst2" in tasks:
        header = "sentence\tlabel"
        files = {"train": [header, *sst2_rows(train)], "dev": [header, *sst2_rows(dev)]}
        built = "label 1 if the snippet's mean human rating > 0; |rating| < 1 dropped"
        info = {**common, "synthetic": False, "source": source, "built": built}
        _write_task(out_dir, "sst2", files, info)
        stats["sst2"] = {k: len(v) - 1 for k, v in files.items()}
    if "stsb" in tasks:
        header = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t"
        header += "sentence1\tsentence2\tscore"
        files = {"train": [header, *stsb_rows(train)], "dev": [header, *stsb_rows(dev)]}
        built = "score = (mean rating + 4) / 8 * 5; sentence2 empty (single-sentence task)"
        info = {**common, "synthetic": False, "source": source, "built": built}
        _write_task(out_dir, "stsb", files, info)
        stats["stsb"] = {k: len(v) - 1 for k, v in files.items()}
    return stats


def _write_mrpc(
    out_dir: Path, bibles: dict[str, list[Verse]], train_size: int, dev_size: int, common: dict
) -> dict[str, int]:
    """MRPC from the same verses in two Bible translations; rows per split."""
    seed = common["seed"]
    web = bibles.get("WEB") or export_bible("WEB")
    kjv = bibles.get("KJV") or export_bible("KJV")
    chapters = sorted({(v.book, v.chapter) for v in web})
    train_ch, dev_ch = _split(chapters, max(1, len(chapters) // 10), seed, "mrpc")
    rng = random.Random(f"{seed}:mrpc-pairs")
    header = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"
    rows = {}
    for split, chs, size in (("train", train_ch, train_size), ("dev", dev_ch, dev_size)):
        keep = set(chs)
        rows[split] = mrpc_rows(
            [v for v in web if (v.book, v.chapter) in keep],
            [v for v in kjv if (v.book, v.chapter) in keep],
            size,
            rng,
        )
    rows["dev"] = _drop_shared(rows["train"], rows["dev"], [3, 4])
    files = {split: [header, *r] for split, r in rows.items()}
    info = {
        **common,
        "synthetic": False,
        "source": "SWORD modules WEB and KJV (diatheke)",
        "built": "1: the same verse in WEB and KJV; 0: a WEB verse and a different KJV verse "
        "of the same chapter; balanced; dev chapters disjoint from train chapters",
    }
    _write_task(out_dir, "mrpc", files, info)
    return {k: len(v) for k, v in rows.items()}


def _write_cola(
    out_dir: Path, wordnet_dir: str | os.PathLike, train_size: int, dev_size: int, common: dict
) -> dict[str, int]:
    """CoLA from WordNet's example sentences and corrupted copies; rows per split."""
    seed = common["seed"]
    low, high = COLA_WORDS
    real = wordnet_examples(wordnet_dir, param="data.text.wordnet_dir")
    real = [s for s in real if low <= len(s.split()) <= high and "\t" not in s]
    train, dev = _split(real, dev_size, seed, "cola")
    rng = random.Random(f"{seed}:cola-edits")
    real_set = set(real)
    rows = {
        "train": cola_rows(train, train_size, rng, real_set),
        "dev": cola_rows(dev, dev_size, rng, real_set),
    }
    rows["dev"] = _drop_shared(rows["train"], rows["dev"], [3])
    info = {
        **common,
        "synthetic": True,
        "source": "WordNet example sentences (Debian wordnet-base)",
        "built": "label 1: a real sentence as is; label 0: the same kind of sentence with two "
        "adjacent words swapped, a word dropped or a word repeated. Not human judgements.",
    }
    _write_task(out_dir, "cola", rows, info)
    return {k: len(v) for k, v in rows.items()}

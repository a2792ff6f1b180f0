"""GLUE tasks: their TSV layouts, a strict TSV reader, and the download of the task archives.

Raw layout, as in the GLUE task zips (and as the stand-ins in `glue_standins.py` write it):

    <out_dir>/glue/<task>/train.tsv
    <out_dir>/glue/<task>/<eval split>.tsv     dev.tsv; MNLI: dev_matched.tsv, dev_mismatched.tsv

Columns per task (tab separated, no quoting; a header line unless said otherwise):
    cola   no header: source, label (0/1), original annotation (`*` if unacceptable), sentence
    sst2   sentence, label (0 negative / 1 positive)
    mrpc   Quality (1 paraphrase / 0 not), #1 ID, #2 ID, #1 String, #2 String
    qqp    id, qid1, qid2, question1, question2, is_duplicate (0/1)
    stsb   index, genre, filename, year, old_index, source1, source2, sentence1, sentence2,
           score (similarity, a float in [0, 5])
    mnli   index, promptID, pairID, genre, 4 parse columns, sentence1, sentence2, annotator
           labels (label1 in train; label1..label5 in dev), gold_label (entailment / neutral /
           contradiction)
    qnli   index, question, sentence, label (entailment / not_entailment)
    rte    index, sentence1, sentence2, label (entailment / not_entailment)
    wnli   index, sentence1, sentence2, label (0/1)

Columns are found by name in the header, so MNLI's train and dev files (12 and 16 columns) read
the same way. A row is malformed if its column count differs from the header's. GLUE TSVs are read
with quoting off: a `"` is an ordinary character (MNLI and QQP texts contain unbalanced quotes).
An empty second sentence is read as a single-sentence example (the STS-B stand-in has one).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from d2v.atomic import atomic_path
from d2v.data.archive import md5sum, safe_extract_zip
from d2v.data.errors import DataError
from d2v.data.http import download
from d2v.data.lines import MAX_LINE_BYTES, bounded_lines

log = logging.getLogger(__name__)

ON_BAD_ROW = ("skip", "fail")
GLUE_BASE_URL = "https://dl.fbaipublicfiles.com/glue/data"
STSB_RANGE = (0.0, 5.0)
_SHOWN_BAD_ROWS = 5  # bad rows listed by file:line in the stats


@dataclass(frozen=True)
class GlueTask:
    """One GLUE task: where its files are and how to read them."""

    name: str  # "cola", "sst2", ...
    folder: str  # folder inside the GLUE zip: "CoLA", "SST-2", ...
    archive: str  # zip file name at the GLUE base URL (the official download script's names)
    text_columns: tuple[str, ...]  # one column (single sentence) or two (pair)
    label_column: str
    labels: tuple[str, ...] | None  # label strings, index = class id; None: regression
    metrics: tuple[str, ...]  # official metrics, the first one the task's headline number
    eval_splits: tuple[str, ...] = ("dev",)
    columns: tuple[str, ...] | None = None  # fixed column names when the files have no header

    @property
    def header(self) -> bool:
        return self.columns is None

    @property
    def pair(self) -> bool:
        return len(self.text_columns) == 2

    @property
    def kind(self) -> str:
        return "regression" if self.labels is None else "classification"

    @property
    def num_classes(self) -> int:
        return 1 if self.labels is None else len(self.labels)

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", *self.eval_splits)


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_ACC = ("accuracy",)
GLUE_TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask(
            "cola", "CoLA", "CoLA.zip", ("sentence",), "label", _BINARY, ("mcc",),
            columns=("source", "label", "original_label", "sentence"),
        ),
        GlueTask("sst2", "SST-2", "SST-2.zip", ("sentence",), "label", _BINARY, ("accuracy",)),
        GlueTask(
            "mrpc", "MRPC", "MRPC.zip", ("#1 String", "#2 String"), "Quality", _BINARY,
            ("f1", "accuracy"),
        ),
        GlueTask(
            "qqp", "QQP", "QQP-clean.zip", ("question1", "question2"), "is_duplicate", _BINARY,
            ("f1", "accuracy"),
        ),
        GlueTask(
            "stsb", "STS-B", "STS-B.zip", ("sentence1", "sentence2"), "score", None,
            ("pearson", "spearman"),
        ),
        GlueTask(
            "mnli", "MNLI", "MNLI.zip", ("sentence1", "sentence2"), "gold_label",
            ("entailment", "neutral", "contradiction"), ("accuracy",),
            eval_splits=("dev_matched", "dev_mismatched"),
        ),
        GlueTask("qnli", "QNLI", "QNLIv2.zip", ("question", "sentence"), "label", _NLI2, _ACC),
        GlueTask("rte", "RTE", "RTE.zip", ("sentence1", "sentence2"), "label", _NLI2, _ACC),
        GlueTask("wnli", "WNLI", "WNLI.zip", ("sentence1", "sentence2"), "label", _BINARY, _ACC),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Example:
    text_a: str
    text_b: str | None  # None for single-sentence tasks (and an empty second sentence)
    label: int | float  # class id (index into GlueTask.labels) or a regression target


def get_task(name: str) -> GlueTask:
    try:
        return GLUE_TASKS[name]
    except KeyError:
        raise DataError(f"unknown GLUE task {name!r}; known: {', '.join(GLUE_TASKS)}") from None


class _BadRow(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _parse_label(raw: str, task: GlueTask) -> int | float:
    if task.labels is not None:
        try:
            return task.labels.index(raw)
        except ValueError:
            raise _BadRow("bad_label", f"label {raw!r} not in {list(task.labels)}") from None
    try:
        value = float(raw)
    except ValueError:
        raise _BadRow("bad_label", f"score {raw!r} is not a number") from None
    low, high = STSB_RANGE
    if not (math.isfinite(value) and low <= value <= high):
        raise _BadRow("bad_label", f"score {raw!r} is not in [{low:g}, {high:g}]")
    return value


def read_glue_tsv(
    path: str | os.PathLike, task: str | GlueTask, on_bad_row: str = "skip"
) -> tuple[list[Example], dict]:
    """Read one GLUE TSV of `task` into examples, in file order.

    Bad rows (wrong column count, a label outside the task's label set or an STS-B score that is
    not a float in [0, 5], an empty first sentence, bytes that are not UTF-8, a row over MAX_LINE_BYTES) are skipped and
    counted with `on_bad_row="skip"`; with "fail" the first one raises DataError naming the file
    and line. A missing header column always raises. Stats: {file, rows, kept, skipped: {reason:
    count}, bad_rows: ["file:line: why", ...] (the first few)}.
    """
    if on_bad_row not in ON_BAD_ROW:
        raise ValueError(f"on_bad_row must be one of {ON_BAD_ROW}, not {on_bad_row!r}")
    task = get_task(task) if isinstance(task, str) else task
    path = Path(path)
    lines = bounded_lines(path)
    columns = task.columns
    if columns is None:
        _, head = next(lines, (1, None))
        if head is None:
            raise DataError(f"{path} is empty or its header is over {MAX_LINE_BYTES} bytes")
        try:
            header = head.decode("utf-8").rstrip("\r").lstrip("\ufeff")  # MRPC has a BOM
        except UnicodeDecodeError as e:
            raise DataError(f"{path}:1: header is not UTF-8: {e}") from e
        columns = tuple(header.split("\t"))
    needed = (*task.text_columns, task.label_column)
    missing = [c for c in needed if c not in columns]
    if missing:
        raise DataError(f"{path}: columns {missing} missing for {task.name} (found {columns})")
    text_idx = [columns.index(c) for c in task.text_columns]
    label_idx = columns.index(task.label_column)

    examples: list[Example] = []
    skipped: dict[str, int] = {}
    bad_rows: list[str] = []
    rows = 0
    for number, raw in lines:
        if raw is not None:
            raw = raw.rstrip(b"\r")
            if not raw.strip():
                continue
        rows += 1
        try:
            if raw is None:
                raise _BadRow("too_long", f"a row over {MAX_LINE_BYTES} bytes")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise _BadRow("not_utf8", f"bytes that are not UTF-8 ({e.reason})") from None
            fields = line.split("\t")
            if len(fields) != len(columns):
                raise _BadRow("malformed", f"{len(fields)} columns, expected {len(columns)}")
            label = _parse_label(fields[label_idx], task)
            texts = [fields[i].strip() for i in text_idx]
            if not texts[0]:
                raise _BadRow("empty_text", f"empty {task.text_columns[0]}")
        except _BadRow as bad:
            where = f"{path}:{number}: {bad}"
            if on_bad_row == "fail":
                raise DataError(f"bad {task.name} row at {where}") from None
            skipped[bad.reason] = skipped.get(bad.reason, 0) + 1
            if len(bad_rows) < _SHOWN_BAD_ROWS:
                bad_rows.append(where)
            continue
        text_b = texts[1] if len(texts) == 2 and texts[1] else None
        examples.append(Example(texts[0], text_b, label))
    if skipped:
        log.warning("%s: skipped %d of %d rows: %s", path, sum(skipped.values()), rows, skipped)
    stats = {
        "file": str(path),
        "rows": rows,
        "kept": len(examples),
        "skipped": skipped,
        "bad_rows": bad_rows,
    }
    return examples, stats


def _check_zip(zip_path: Path, members: list[str]) -> None:
    """DataError unless every member is in the zip and every entry's CRC-32 matches."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = set(zf.namelist())
            absent = [m for m in members if m not in names]
            if absent:
                raise DataError(f"{zip_path} lacks {absent} (has {sorted(names)[:10]})")
            corrupt = zf.testzip()
            if corrupt is not None:
                raise DataError(f"CRC mismatch for {corrupt!r} in {zip_path}")
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise DataError(f"cannot read zip {zip_path}: {e}") from e


def download_glue(
    tasks: list[str],
    base_url: str,
    cache_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    md5: dict[str, str | None] | None = None,
) -> dict:
    """Download, verify and extract GLUE task zips into `<out_dir>/glue/<task>/<split>.tsv`.

    Each task's zip is `<base_url>/<archive>` (`GLUE_BASE_URL` is the official host; archive names
    as in the official `download_glue_data.py`: `QQP-clean.zip`, `QNLIv2.zip`, else
    `<FOLDER>.zip`), cached in `cache_dir`. MRPC is special in the official script (it builds the
    TSVs from Microsoft's MSI or SentEval's text files, because MRPC may not be re-hosted); here an
    `MRPC.zip` with the usual GLUE layout (`MRPC/train.tsv`, `MRPC/dev.tsv`) is expected at the
    same base URL: put one on a mirror you control.

    Verification: `md5[task]` when given (GLUE publishes no checksums for its zips, so there are
    no defaults); always, every expected TSV (`<FOLDER>/train.tsv` and the eval splits) must be in
    the zip and every entry must pass zipfile's CRC-32 check. A zip that fails is deleted from the
    cache, so a rerun downloads it again. Extraction refuses unsafe entries (`safe_extract_zip`);
    each task folder appears only when complete. Returns {task: {url, md5 (of the zip), files}}.
    """
    md5 = md5 or {}
    cache_dir = Path(cache_dir)
    result: dict[str, dict] = {}
    for name in tasks:
        task = get_task(name)
        url = f"{base_url.rstrip('/')}/{task.archive}"
        zip_path = download(url, cache_dir / task.archive, md5=md5.get(name), desc=task.archive)
        members = [f"{task.folder}/{split}.tsv" for split in task.splits]
        try:
            _check_zip(zip_path, members)
            with atomic_path(Path(out_dir) / "glue" / name) as tmp:
                staging = tmp.parent / "extracted"
                safe_extract_zip(zip_path, staging, members=members)
                tmp.mkdir()
                for split in task.splits:
                    shutil.move(staging / task.folder / f"{split}.tsv", tmp / f"{split}.tsv")
        except DataError:
            zip_path.unlink(missing_ok=True)
            raise
        result[name] = {"url": url, "md5": md5sum(zip_path), "files": members}
        log.info("GLUE %s: %s extracted to %s", name, url, Path(out_dir) / "glue" / name)
    return result

"""Prepare text for training (the prepare stage): a BPE vocabulary, packed pretraining blocks,
encoded GLUE tasks.

Input (`raw_dir`): `corpus/*.txt` (documents, see `text_corpus.py`) and `glue/<task>/<split>.tsv`
(GLUE layout, see `glue.py`; real GLUE or the embedded stand-ins). Output, written atomically as
a whole: the folder layout `text_shards.py` documents and reads.

Dims: N examples or blocks, T = block_size, L = max_seq_len.

Pretraining blocks (RoBERTa's FULL-SENTENCES packing): all documents are concatenated, each one
followed by `</s>`, and the stream is cut into pieces of T - 1 tokens, each given a leading `<s>`;
the last partial piece is dropped, so a block can hold several documents or part of one. Every
50th block (evenly spaced, at least 4) is held out for validation.

GLUE inputs: `<s> a </s>` or `<s> a </s></s> b </s>`, truncated to L tokens (tokens come off the
longer text first), then padded with `<pad>` to exactly L.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from d2v.atomic import atomic_path, read_json, write_json
from d2v.data.bpe import (
    BOS_ID,
    EOS_ID,
    MASK_ID,
    PAD_ID,
    SPECIAL_TOKENS,
    UNK_ID,
    save_tokenizer,
    train_bpe,
)
from d2v.data.errors import DataError
from d2v.data.glue import Example, GlueTask, get_task, read_glue_tsv
from d2v.data.meta import TextMeta
from d2v.data.text_corpus import read_corpus

if TYPE_CHECKING:  # tokenizers loads at prepare time only: the training stages read token ids
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

VALID_EVERY = 50  # one block in 50 (2%) is held out
MIN_VALID_BLOCKS = 4
_ENCODE_BATCH = 4096  # documents per encode_batch call (bounds memory on a large corpus)


def pack_blocks(docs_ids: list[np.ndarray], block_size: int) -> np.ndarray:
    """Concatenate documents with `</s>` after each, cut into `<s>`-led blocks: int32 (N, T)."""
    eos = np.array([EOS_ID], np.int32)
    stream = np.concatenate([part for ids in docs_ids for part in (ids, eos)])
    body = block_size - 1
    n = len(stream) // body
    blocks = np.empty((n, block_size), np.int32)
    blocks[:, 0] = BOS_ID
    blocks[:, 1:] = stream[: n * body].reshape(n, body)
    return blocks


def split_valid(blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(train, valid): every VALID_EVERY-th block, evenly spaced, at least MIN_VALID_BLOCKS."""
    n = len(blocks)
    n_valid = max(MIN_VALID_BLOCKS, n // VALID_EVERY)
    if n < 2 * n_valid:
        raise DataError(
            f"corpus gives only {n} blocks of {blocks.shape[1]} tokens: too few to hold out "
            f"{n_valid} for validation; use more text or a smaller block_size"
        )
    is_valid = np.zeros(n, bool)
    is_valid[np.linspace(0, n - 1, n_valid).round().astype(int)] = True
    return blocks[~is_valid], blocks[is_valid]


def encode_documents(tokenizer: Tokenizer, docs: list[str]) -> list[np.ndarray]:
    """Bare token ids (no specials) of each document, batched."""
    out: list[np.ndarray] = []
    with tqdm(total=len(docs), desc="encode corpus", unit=" docs") as bar:
        for start in range(0, len(docs), _ENCODE_BATCH):
            batch = docs[start : start + _ENCODE_BATCH]
            encodings = tokenizer.encode_batch(batch, add_special_tokens=False)
            out.extend(np.asarray(e.ids, np.int32) for e in encodings)
            bar.update(len(batch))
    return out


def encode_glue(tokenizer: Tokenizer, examples: list[Example], max_seq_len: int) -> np.ndarray:
    """int32 (N, L) ids: `<s> a </s>` or `<s> a </s></s> b </s>`, truncated longest-first and
    padded to L = max_seq_len. Single and pair examples may be mixed."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer.to_str())  # leave the caller's tokenizer unconfigured
    tok.encode_special_tokens = tokenizer.encode_special_tokens
    tok.enable_truncation(max_seq_len, strategy="longest_first")
    tok.enable_padding(pad_id=PAD_ID, pad_token=SPECIAL_TOKENS[PAD_ID], length=max_seq_len)
    ids = np.full((len(examples), max_seq_len), PAD_ID, np.int32)
    singles = [i for i, e in enumerate(examples) if e.text_b is None]
    pairs = [i for i, e in enumerate(examples) if e.text_b is not None]
    if singles:
        encodings = tok.encode_batch([examples[i].text_a for i in singles])
        ids[singles] = [e.ids for e in encodings]
    if pairs:
        encodings = tok.encode_batch([(examples[i].text_a, examples[i].text_b) for i in pairs])
        ids[pairs] = [e.ids for e in encodings]
    return ids


def _task_info(task: GlueTask, raw_task_dir: Path) -> dict:
    standin_file = raw_task_dir / "standin.json"
    standin = read_json(standin_file, "rerun download@text") if standin_file.is_file() else {}
    return {
        "kind": task.kind,
        "num_classes": task.num_classes,
        "labels": list(task.labels) if task.labels is not None else None,
        "metrics": list(task.metrics),
        "eval_splits": list(task.eval_splits),
        "pair": task.pair,
        "standin": bool(standin),
        "synthetic": bool(standin.get("synthetic", False)),
        "splits": {},
    }


def task_sentences(raw_dir: Path, tasks: list[GlueTask], on_bad_row: str) -> list[str]:
    """The distinct sentences of the tasks' *training* splits, in file order: unlabeled text for
    task-adaptive pretraining (Gururangan et al., 2020). Dev and test sentences never."""
    seen: dict[str, None] = {}
    for task in tasks:
        path = raw_dir / "glue" / task.name / "train.tsv"
        if not path.is_file():
            raise DataError(f"GLUE file {path} is missing for task {task.name}")
        examples, _ = read_glue_tsv(path, task, on_bad_row)
        for e in examples:
            for text in (e.text_a, e.text_b):
                if text:
                    seen.setdefault(text, None)
    return list(seen)


def prepare_text(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    vocab_size: int,
    block_size: int,
    max_seq_len: int,
    tasks: list[str],
    on_bad_row: str = "skip",
    limit_docs: int | None = None,
    min_frequency: int = 2,
    task_adaptive: int = 0,
) -> TextMeta:
    """Train the BPE on `raw_dir/corpus`, pack the corpus, encode `tasks`; write `out_dir`.

    `on_bad_row` ("skip" or "fail") applies to GLUE rows and to corpus lines that are not UTF-8.
    `limit_docs`: use only the first documents of the corpus (tests, quick runs).
    `task_adaptive`: add the tasks' training sentences, each a document, this many times to the
    pretraining corpus (0: none). Returns meta.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    glue_tasks = [get_task(name) for name in tasks]
    docs, corpus_read, adaptive = read_documents(
        raw_dir, glue_tasks, on_bad_row, limit_docs, task_adaptive
    )
    start = time.perf_counter()
    tokenizer = train_bpe(docs, vocab_size, min_frequency)
    log.info("BPE trained on %d documents in %.1f s", len(docs), time.perf_counter() - start)
    start = time.perf_counter()
    docs_ids = encode_documents(tokenizer, docs)
    blocks = pack_blocks(docs_ids, block_size)
    log.info("corpus encoded into %d blocks in %.1f s", len(blocks), time.perf_counter() - start)
    train_blocks, valid_blocks = split_valid(blocks)
    corpus = {
        "documents": len(docs),
        "words": sum(len(d.split()) for d in docs),
        "tokens": sum(len(ids) for ids in docs_ids),  # BPE tokens, no specials
        "blocks": {"train": len(train_blocks), "valid": len(valid_blocks)},
        **corpus_read,
        "task_adaptive": {"sentences": adaptive, "repeats": task_adaptive},
    }
    with atomic_path(out_dir) as tmp:
        (tmp / "pretrain").mkdir(parents=True)
        np.save(tmp / "pretrain" / "train.npy", train_blocks)
        np.save(tmp / "pretrain" / "valid.npy", valid_blocks)
        save_tokenizer(tokenizer, tmp / "tokenizer.json")
        task_infos, skipped_rows = encode_tasks(
            raw_dir, tmp, glue_tasks, tokenizer, max_seq_len, on_bad_row
        )
        meta = TextMeta(
            vocab_size=tokenizer.get_vocab_size(),
            special_ids={
                "bos": BOS_ID,
                "pad": PAD_ID,
                "eos": EOS_ID,
                "unk": UNK_ID,
                "mask": MASK_ID,
            },
            block_size=block_size,
            max_seq_len=max_seq_len,
            corpus=corpus,
            tasks=task_infos,
            skipped_rows=skipped_rows,
        )
        write_json(tmp / "meta.json", meta.to_json())
    log.info(
        "prepared text: vocab %d, %d train / %d valid blocks of %d, tasks %s",
        meta.vocab_size,
        len(train_blocks),
        len(valid_blocks),
        block_size,
        {name: info["splits"] for name, info in meta.tasks.items()},
    )
    return meta


def read_documents(
    raw_dir: Path,
    glue_tasks: list[GlueTask],
    on_bad_row: str,
    limit_docs: int | None,
    task_adaptive: int,
) -> tuple[list[str], dict, int]:
    """The pretraining documents: the corpus's (its first `limit_docs`), then the tasks' training
    sentences `task_adaptive` times; the corpus's read stats (files, skipped and bad lines); the
    number of task sentences."""
    read: dict = {}
    docs = list(read_corpus(raw_dir / "corpus", on_bad_line=on_bad_row, stats=read))
    if limit_docs is not None:
        docs = docs[:limit_docs]
    adaptive = task_sentences(raw_dir, glue_tasks, on_bad_row) if task_adaptive else []
    stats = {
        "files": read.get("files", 0),
        "skipped_lines": read.get("skipped_lines", 0),
        "bad_lines": read.get("bad_lines", []),
    }
    return docs + adaptive * task_adaptive, stats, len(adaptive)


def encode_tasks(
    raw_dir: Path,
    out_dir: Path,
    glue_tasks: list[GlueTask],
    tokenizer: Tokenizer,
    max_seq_len: int,
    on_bad_row: str,
) -> tuple[dict[str, dict], dict[str, dict]]:
    """Each task's splits as `out_dir/glue/<task>/<split>.npz`; returns the tasks' info (meta's
    `tasks`) and the read stats of the splits that skipped rows (meta's `skipped_rows`)."""
    task_infos: dict[str, dict] = {}
    skipped_rows: dict[str, dict] = {}
    for task in tqdm(glue_tasks, desc="encode GLUE", unit=" tasks"):
        info = _task_info(task, raw_dir / "glue" / task.name)
        for split in task.splits:
            path = raw_dir / "glue" / task.name / f"{split}.tsv"
            if not path.is_file():
                raise DataError(f"GLUE file {path} is missing for task {task.name}")
            examples, stats = read_glue_tsv(path, task, on_bad_row)
            if not examples:
                raise DataError(f"no usable rows in {path}")
            labels = np.asarray(
                [e.label for e in examples],
                np.float32 if task.kind == "regression" else np.int64,
            )
            (out_dir / "glue" / task.name).mkdir(parents=True, exist_ok=True)
            np.savez(
                out_dir / "glue" / task.name / f"{split}.npz",
                input_ids=encode_glue(tokenizer, examples, max_seq_len),
                labels=labels,
            )
            info["splits"][split] = len(examples)
            if stats["skipped"]:
                skipped_rows.setdefault(task.name, {})[split] = stats
        task_infos[task.name] = info
    return task_infos, skipped_rows

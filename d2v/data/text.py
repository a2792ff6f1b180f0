"""Text's raw data: a Bible + WordNet corpus and GLUE-format stand-ins, or the GLUE archives and a
local corpus (download), turned into a byte-level BPE, packed pretraining blocks and encoded GLUE
inputs (prepare). Registry entry: d2v/registry.py."""

from __future__ import annotations

from pathlib import Path

from d2v.atomic import atomic_path
from d2v.config import TextDataConfig
from d2v.registry import DataStep

SEED = 0  # the stand-ins are fixed data, not drawn per run


def download(cfg: TextDataConfig, out_dir: Path) -> DataStep:
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        if cfg.source == "glue":
            from d2v.data.glue import download_glue

            stats = {
                "glue": download_glue(cfg.tasks, cfg.glue_url, cfg.download_dir, tmp, cfg.glue_md5),
                "corpus": copy_local_corpus(cfg.corpus_path or "", tmp / "corpus", cfg.on_bad_row),
            }
        else:
            from d2v.data.bible import export_bible
            from d2v.data.glue_standins import write_glue_standins
            from d2v.data.text_corpus import write_embedded_corpus

            bibles = {m: export_bible(m) for m in dict.fromkeys([*cfg.sword_modules, "WEB", "KJV"])}
            stats = {
                "corpus": write_embedded_corpus(tmp, cfg.sword_modules, cfg.wordnet_dir, bibles),
                "glue": write_glue_standins(
                    tmp, cfg.vader_dir, seed=SEED, wordnet_dir=cfg.wordnet_dir, bibles=bibles
                ),
            }
    return DataStep(stats, {})


def copy_local_corpus(path: str, out_dir: Path, on_bad_line: str = "skip") -> dict:
    """A user's corpus (a .txt file or folder; a document per line or blank-line separated) as
    one document per line in `out_dir/corpus.txt`; non-UTF-8 lines skipped and counted."""
    from d2v.data.errors import SourceMissingError
    from d2v.data.text_corpus import read_corpus

    if not Path(path).exists():
        raise SourceMissingError(f"the corpus at {path!r}", "data.text.corpus_path")
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict = {}
    documents = 0
    with open(out_dir / "corpus.txt", "w", encoding="utf-8") as f:
        for doc in read_corpus(path, on_bad_line=on_bad_line, stats=stats):
            f.write(doc + "\n")  # read_corpus has collapsed the whitespace
            documents += 1
    return {"documents": documents, **stats}


def prepare(cfg: TextDataConfig, raw_dir: Path, out_dir: Path) -> DataStep:
    from d2v.data.text_prepare import prepare_text

    meta = prepare_text(
        raw_dir,
        out_dir,
        vocab_size=cfg.vocab_size,
        block_size=cfg.block_size,
        max_seq_len=cfg.max_seq_len,
        tasks=cfg.tasks,
        on_bad_row=cfg.on_bad_row,
        limit_docs=cfg.limit_docs,
        min_frequency=cfg.min_frequency,
        task_adaptive=cfg.task_adaptive,
    )
    skipped = meta.corpus["skipped_lines"] + sum(
        sum(stats["skipped"].values())
        for splits in meta.skipped_rows.values()
        for stats in splits.values()
    )
    return DataStep(meta.to_json(), {"skipped": skipped})

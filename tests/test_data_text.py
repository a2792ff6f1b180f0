"""Text data: Bible export, BPE, corpus reading, GLUE TSV reading, stand-ins, prepared shards."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from d2v.data import glue_standins
from d2v.data.bible import clean_verse_text
from d2v.data.bpe import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, train_bpe
from d2v.data.errors import DataError
from d2v.data.glue import Example, read_glue_tsv
from d2v.data.glue_standins import (
    VADER_SDIST,
    fetch_vader,
    write_glue_standins,
)
from d2v.data.meta import TextMeta, read_meta
from d2v.data.text_corpus import read_corpus, write_embedded_corpus
from d2v.data.text_prepare import encode_glue, pack_blocks, prepare_text
from d2v.data.text_shards import load_blocks, load_glue_split
from tests.helpers import fake_vader_sdist

ROUND_TRIP = [
    "In the beginning, God created the heavens and the earth.",
    "“Aren’t five sparrows sold for two assaria coins?” — naïve café, 日本語, 🙂!",
    "  Two  spaces,\ta tab; (parentheses) & 100% [brackets]\n",
]


@pytest.fixture(scope="module")
def tokenizer(bibles: dict):
    return train_bpe([v.text for v in bibles["WEB"][:8000]], vocab_size=1000)


@pytest.fixture(scope="module")
def raw_dir(tmp_path_factory: pytest.TempPathFactory, bibles: dict) -> Path:
    root = tmp_path_factory.mktemp("text_raw")
    fake_vader_sdist(root / "vader")
    write_embedded_corpus(root, bibles=bibles)
    write_glue_standins(root, root / "vader", bibles=bibles, dev_size=200, vader_md5=None)
    return root


# --- Bible -------------------------------------------------------------------------------------


def test_bible_export_counts_and_order(bibles: dict) -> None:
    for module, verses in bibles.items():
        assert 30_000 < len(verses) < 32_000, module
        assert verses[0].book == "Genesis" and (verses[0].chapter, verses[0].verse) == (1, 1)
        assert verses[-1].book == "Revelation of John"
        keys = [(v.book, v.chapter, v.verse) for v in verses]
        assert len(set(keys)) == len(keys)
    assert bibles["WEB"][0].text == "In the beginning, God created the heavens and the earth."
    assert bibles["KJV"][0].text == "In the beginning God created the heaven and the earth."


def test_bible_text_is_clean(bibles: dict) -> None:
    web = {(v.book, v.chapter, v.verse): v.text for v in bibles["WEB"]}
    for verses in bibles.values():
        for v in verses:
            assert v.text and v.text == " ".join(v.text.split())
            assert not re.search(r"[<>\\¶]", v.text), v
            assert not re.search(r"[a-z][A-Z][a-z]", v.text.replace("McC", "")), v  # glued words
    # Headings (psalm titles) are not verse text; the WEB glossary is not part of Rev 22:21.
    assert web[("Psalms", 3, 1)].startswith("Yahweh, how my adversaries have increased!")
    assert len(web[("Revelation of John", 22, 21)]) < 200
    # WEB drops the space where a footnote was between two <w> elements.
    assert "Godcreated" not in " ".join(web.values())


def test_clean_verse_text_rules() -> None:
    osis = '<w>God</w><note placement="foot">1:1 x</note><w>created</w>, “<w>Let</w>”'
    assert clean_verse_text(osis, whole_word_elements=True) == "God created, “Let”"
    assert clean_verse_text("<w>give</w>n. ¶ \\nd <w>LORD</w>", False) == "given. LORD"


# --- BPE ---------------------------------------------------------------------------------------


def test_bpe_specials_and_round_trip(tokenizer) -> None:
    for i, token in enumerate(SPECIAL_TOKENS):
        assert tokenizer.token_to_id(token) == i
    assert SPECIAL_TOKENS == ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
    for text in ROUND_TRIP:
        ids = tokenizer.encode(text).ids
        assert ids[0] == BOS_ID and ids[-1] == EOS_ID
        assert tokenizer.decode(ids) == text
    spelled = tokenizer.encode("a </s> <mask> b", add_special_tokens=False).ids
    assert not set(spelled) & set(range(len(SPECIAL_TOKENS)))  # special names in text are text
    assert tokenizer.get_vocab_size() == 1000


# --- corpus ------------------------------------------------------------------------------------


def test_read_corpus_lines_paragraphs_and_bad_bytes(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"first doc\nsecond   doc\n\xff\xfe broken\nthird\n")
    (tmp_path / "b.txt").write_text("para one\nstill one\n\npara two\n\n\nthree\n")
    stats: dict = {}
    docs = list(read_corpus(tmp_path, stats=stats))
    assert docs == ["first doc", "second doc", "third", "para one still one", "para two", "three"]
    assert stats["skipped_lines"] == 1 and stats["bad_lines"][0].startswith(f"{tmp_path}/a.txt:3")
    assert list(read_corpus(tmp_path / "b.txt", fmt="lines"))[:2] == ["para one", "still one"]
    with pytest.raises(DataError, match=r"a\.txt:3"):
        list(read_corpus(tmp_path, on_bad_line="fail"))


def test_embedded_corpus_layout(raw_dir: Path) -> None:
    files = sorted(p.name for p in (raw_dir / "corpus").iterdir())
    assert files == ["bible-kjv.txt", "bible-web.txt", "wordnet.txt"]
    web = (raw_dir / "corpus" / "bible-web.txt").read_text().splitlines()
    assert len(web) == 1189  # one document per chapter
    assert web[0].startswith("In the beginning, God created")


# --- GLUE TSV reader ---------------------------------------------------------------------------


def test_read_glue_tsv_skips_and_counts_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "dev.tsv"
    path.write_bytes(
        b"index\tsentence1\tsentence2\tlabel\n"
        b"0\tA man sleeps.\tSomeone sleeps.\tentailment\n"
        b"1\tonly two\tcolumns\n"  # line 3: malformed
        b"2\tA cat.\tA dog.\tmaybe\n"  # line 4: bad label
        b'3\t"Quoted \tno quoting\tnot_entailment\n'  # a quote is an ordinary character
        b"4\tbad \xff bytes\tx\tentailment\n"  # line 6: not UTF-8
    )
    examples, stats = read_glue_tsv(path, "rte")
    assert examples == [
        Example("A man sleeps.", "Someone sleeps.", 0),
        Example('"Quoted', "no quoting", 1),
    ]
    assert stats["skipped"] == {"malformed": 1, "bad_label": 1, "not_utf8": 1}
    assert [r.split(": ")[0] for r in stats["bad_rows"]] == [f"{path}:{n}" for n in (3, 4, 6)]
    with pytest.raises(DataError, match=rf"{re.escape(str(path))}:3"):
        read_glue_tsv(path, "rte", on_bad_row="fail")


def test_read_glue_tsv_layouts(tmp_path: Path) -> None:
    cola = tmp_path / "cola.tsv"  # no header
    cola.write_text("gj04\t1\t\tThe cat sat.\ngj04\t0\t*\tCat the sat.\ngj04\t2\t\tBad label.\n")
    examples, stats = read_glue_tsv(cola, "cola")
    assert [e.label for e in examples] == [1, 0] and stats["skipped"] == {"bad_label": 1}
    mrpc = tmp_path / "mrpc.tsv"  # MRPC's files start with a byte-order mark
    mrpc.write_text("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n1\t1\t2\tA b.\tA c.\n")
    assert read_glue_tsv(mrpc, "mrpc")[0] == [Example("A b.", "A c.", 1)]
    stsb = tmp_path / "stsb.tsv"
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
    rows = ["0\tg\tf\t2012\t0\ts\ts\tA.\tB.\t3.2", "1\tg\tf\t2012\t1\ts\ts\tA.\t\t0.5"]
    rows += ["2\tg\tf\t2012\t2\ts\ts\tA.\tB.\t5.5", "3\tg\tf\t2012\t3\ts\ts\tA.\tB.\tnan"]
    stsb.write_text("\n".join([head, *rows]) + "\n")
    examples, stats = read_glue_tsv(stsb, "stsb")
    assert examples == [Example("A.", "B.", 3.2), Example("A.", None, 0.5)]  # empty sentence2 ok
    assert stats["skipped"] == {"bad_label": 2}


# --- stand-ins ---------------------------------------------------------------------------------


def test_fetch_vader_skips_when_present(tmp_path: Path, monkeypatch) -> None:
    sdist = fake_vader_sdist(tmp_path)

    def no_pip(*args, **kwargs):
        raise AssertionError("pip must not run when the sdist is cached")

    monkeypatch.setattr(glue_standins.subprocess, "run", no_pip)
    assert fetch_vader(tmp_path, md5=None) == sdist
    with pytest.raises(DataError, match="md5 mismatch"):
        fetch_vader(tmp_path, md5="0" * 32)


def test_fetch_vader_runs_pip_when_absent(tmp_path: Path, monkeypatch) -> None:
    calls = []

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        fake_vader_sdist(Path(cmd[cmd.index("-d") + 1]))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(glue_standins.subprocess, "run", fake_pip)
    sdist = fetch_vader(tmp_path / "cache", md5=None)
    assert sdist == tmp_path / "cache" / VADER_SDIST and sdist.is_file()
    (cmd,) = calls
    assert cmd[1:4] == ["-m", "pip", "download"] and "vaderSentiment==3.3.2" in cmd
    assert "--no-deps" in cmd and cmd[cmd.index("--no-binary") + 1] == ":all:"
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [VADER_SDIST]  # no temp left


def _texts(examples: list[Example]) -> set[str]:
    return {t for e in examples for t in (e.text_a, e.text_b) if t}


@pytest.mark.parametrize("task", ["sst2", "stsb", "mrpc", "cola"])
def test_standins_are_readable_balanced_and_disjoint(raw_dir: Path, task: str) -> None:
    train, train_stats = read_glue_tsv(raw_dir / "glue" / task / "train.tsv", task, "fail")
    dev, _ = read_glue_tsv(raw_dir / "glue" / task / "dev.tsv", task, "fail")
    assert train_stats["skipped"] == {} and len(dev) >= 100 and len(train) > len(dev)
    assert not _texts(train) & _texts(dev)
    labels = np.array([e.label for e in train + dev])
    if task == "stsb":
        assert labels.min() >= 0.0 and labels.max() <= 5.0 and labels.std() > 0.5
        assert all(e.text_b is None for e in train)
    else:
        assert 0.4 < labels.mean() < 0.6
    assert (task == "mrpc") == all(e.text_b for e in train)
    assert (raw_dir / "glue" / task / "standin.json").is_file()


def test_standins_vader_stats_and_cola_is_synthetic(raw_dir: Path) -> None:
    assert '"synthetic": true' in (raw_dir / "glue" / "cola" / "standin.json").read_text()
    assert '"synthetic": false' in (raw_dir / "glue" / "sst2" / "standin.json").read_text()
    sdist = raw_dir / "vader" / VADER_SDIST
    snippets, stats = glue_standins.read_vader_snippets(sdist)
    assert stats == {"snippets": 600, "skipped": 2} and len(snippets) == 600


# --- prepared shards ---------------------------------------------------------------------------


def test_pack_blocks_layout() -> None:
    docs = [
        np.array([10, 11, 12], np.int32),
        np.array([20], np.int32),
        np.array([30, 31], np.int32),
    ]
    blocks = pack_blocks(docs, block_size=4)  # stream 10 11 12 </s> 20 </s> 30 31 </s>
    expected = [[BOS_ID, 10, 11, 12], [BOS_ID, EOS_ID, 20, EOS_ID], [BOS_ID, 30, 31, EOS_ID]]
    assert blocks.dtype == np.int32 and blocks.tolist() == expected


def test_glue_encoding_layout_truncation_and_padding(tokenizer) -> None:
    sep = tokenizer.encode("a", "b").ids  # <s> a </s></s> b </s>
    assert sep[0] == BOS_ID and sep[-1] == EOS_ID and sep[2:4] == [EOS_ID, EOS_ID]
    long_a = "word " * 50
    examples = [Example("A short one.", None, 0), Example("Is it?", "It is.", 1)]
    examples.append(Example(long_a.strip(), "Short b.", 0))
    ids = encode_glue(tokenizer, examples, max_seq_len=16)
    assert ids.shape == (3, 16) and ids.dtype == np.int32
    single = tokenizer.encode("A short one.").ids
    assert ids[0, : len(single)].tolist() == single
    assert (ids[0, len(single) :] == PAD_ID).all()
    pair = tokenizer.encode("Is it?", "It is.").ids
    assert ids[1, : len(pair)].tolist() == pair and (ids[1, len(pair) :] == PAD_ID).all()
    # Truncated to 16 with no padding; the longer text lost tokens, the short one kept all.
    b_ids = tokenizer.encode("Short b.", add_special_tokens=False).ids
    assert ids[2, -1] == EOS_ID and PAD_ID not in ids[2]
    assert ids[2, -1 - len(b_ids) : -1].tolist() == b_ids
    assert ids[2, -3 - len(b_ids) : -1 - len(b_ids)].tolist() == [EOS_ID, EOS_ID]


@pytest.fixture(scope="module")
def prepared(raw_dir: Path) -> Path:
    out = raw_dir.parent / "text_prepared"
    tasks = ["sst2", "stsb", "mrpc", "cola"]
    prepare_text(raw_dir, out, 600, block_size=64, max_seq_len=48, tasks=tasks, limit_docs=300)
    return out


def test_prepared_blocks(prepared: Path) -> None:
    meta = read_meta(prepared, TextMeta)
    train, valid = load_blocks(prepared), load_blocks(prepared, "valid")
    assert isinstance(train, np.memmap) and train.dtype == np.int32
    assert train.shape[1] == valid.shape[1] == meta.block_size == 64
    assert len(valid) >= 4 and len(train) > 10 * len(valid)
    assert (train[:, 0] == BOS_ID).all() and (valid[:, 0] == BOS_ID).all()
    separators = (train == EOS_ID).sum() + (valid == EOS_ID).sum()
    assert meta.corpus["documents"] - 2 <= separators <= meta.corpus["documents"]
    assert train.max() < meta.vocab_size == 600
    assert meta.special_ids == {"bos": 0, "pad": 1, "eos": 2, "unk": 3, "mask": 4}
    corpus = meta.corpus
    assert corpus["documents"] == 300 and corpus["tokens"] > corpus["words"] > 0
    assert corpus["blocks"] == {"train": len(train), "valid": len(valid)}
    assert (prepared / "tokenizer.json").is_file()


def test_a_rerun_writes_byte_identical_files(prepared: Path, raw_dir: Path) -> None:
    """The prepared folder is a pure function of its inputs (no timings, no timestamps): DVC sees
    a re-run of prepare@text as no change, and the text chain after it stays up to date."""
    again = raw_dir.parent / "text_prepared_again"
    tasks = ["sst2", "stsb", "mrpc", "cola"]
    prepare_text(raw_dir, again, 600, block_size=64, max_seq_len=48, tasks=tasks, limit_docs=300)

    def files(root: Path) -> dict[str, bytes]:
        return {str(f.relative_to(root)): f.read_bytes() for f in root.rglob("*") if f.is_file()}

    first, second = files(prepared), files(again)
    assert sorted(first) == sorted(second)
    assert [name for name in first if first[name] != second[name]] == []


def test_prepared_glue(prepared: Path) -> None:
    meta = read_meta(prepared, TextMeta)
    assert meta.tasks["stsb"]["kind"] == "regression"
    assert meta.tasks["mrpc"]["metrics"] == ["f1", "accuracy"]
    assert meta.tasks["cola"]["synthetic"] and not meta.tasks["sst2"]["synthetic"]
    for task, info in meta.tasks.items():
        for split, count in info["splits"].items():
            data = load_glue_split(prepared, task, split)
            assert data.input_ids.shape == (count, 48) and data.input_ids.dtype == np.int32
            assert (data.input_ids[:, 0] == BOS_ID).all()
            regression = info["kind"] == "regression"
            assert data.labels.dtype == (np.float32 if regression else np.int64)
    pairs = load_glue_split(prepared, "mrpc", "dev").input_ids
    assert ((pairs[:, :-1] == EOS_ID) & (pairs[:, 1:] == EOS_ID)).any(axis=1).all()

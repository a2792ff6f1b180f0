"""GLUE download from a local HTTP server: extraction, checksum mismatch, unsafe zip entries."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from d2v.data.archive import safe_extract_zip
from d2v.data.errors import DataError
from d2v.data.glue import download_glue, read_glue_tsv

RTE_TSV = "index\tsentence1\tsentence2\tlabel\n0\tA man sleeps.\tSomeone sleeps.\tentailment\n"
MNLI_HEAD = (
    "index\tpromptID\tpairID\tgenre\tp1\tp2\tp3\tp4\tsentence1\tsentence2\tlabel1\tgold_label"
)
MNLI_TSV = MNLI_HEAD + "\n0\t1\t1a\tfiction\t-\t-\t-\t-\tIt rains.\tIt is wet.\tneutral\tneutral\n"


def _zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, served folder): a threaded HTTP server on 127.0.0.1."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[method-assign]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/glue/data", root
    finally:
        httpd.shutdown()
        httpd.server_close()


def _serve(root: Path, name: str, files: dict[str, str]) -> Path:
    (root / "glue" / "data").mkdir(parents=True, exist_ok=True)
    return _zip(root / "glue" / "data" / name, files)


def test_download_and_extract(server, tmp_path: Path) -> None:
    base, root = server
    rte = _serve(root, "RTE.zip", {"RTE/train.tsv": RTE_TSV, "RTE/dev.tsv": RTE_TSV})
    mnli_files = {f"MNLI/{s}.tsv": MNLI_TSV for s in ("train", "dev_matched", "dev_mismatched")}
    _serve(root, "MNLI.zip", {**mnli_files, "MNLI/test_matched.tsv": MNLI_TSV})
    md5 = hashlib.md5(rte.read_bytes()).hexdigest()
    out = tmp_path / "raw"
    result = download_glue(["rte", "mnli"], base, tmp_path / "cache", out, md5={"rte": md5})
    assert result["rte"]["md5"] == md5 and result["rte"]["url"] == f"{base}/RTE.zip"
    assert sorted(p.name for p in (out / "glue" / "rte").iterdir()) == ["dev.tsv", "train.tsv"]
    mnli = sorted(p.name for p in (out / "glue" / "mnli").iterdir())
    assert mnli == ["dev_matched.tsv", "dev_mismatched.tsv", "train.tsv"]
    examples, _ = read_glue_tsv(out / "glue" / "mnli" / "dev_matched.tsv", "mnli", "fail")
    assert [(e.text_a, e.text_b, e.label) for e in examples] == [("It rains.", "It is wet.", 1)]


def test_checksum_mismatch_leaves_nothing_complete(server, tmp_path: Path) -> None:
    base, root = server
    _serve(root, "RTE.zip", {"RTE/train.tsv": RTE_TSV, "RTE/dev.tsv": RTE_TSV})
    cache, out = tmp_path / "cache", tmp_path / "raw"
    with pytest.raises(DataError, match="md5 mismatch"):
        download_glue(["rte"], base, cache, out, md5={"rte": "0" * 32})
    assert not (out / "glue" / "rte").exists()
    assert list(cache.iterdir()) == []  # neither RTE.zip nor a .part


def test_missing_tsv_and_bad_crc_are_refused(server, tmp_path: Path) -> None:
    base, root = server
    _serve(root, "RTE.zip", {"RTE/train.tsv": RTE_TSV})  # no dev.tsv
    cache, out = tmp_path / "cache", tmp_path / "raw"
    with pytest.raises(DataError, match="lacks"):
        download_glue(["rte"], base, cache, out)
    assert not (cache / "RTE.zip").exists() and not (out / "glue" / "rte").exists()
    served = _serve(root, "RTE.zip", {"RTE/train.tsv": RTE_TSV, "RTE/dev.tsv": RTE_TSV})
    data = bytearray(served.read_bytes())
    data[data.index(b"A man sleeps")] ^= 0x20  # stored (uncompressed): flips one letter's case
    served.write_bytes(bytes(data))
    with pytest.raises(DataError, match="CRC"):
        download_glue(["rte"], base, cache, out)
    assert not (out / "glue" / "rte").exists()


def test_zip_entry_escaping_target_is_refused(server, tmp_path: Path) -> None:
    base, root = server
    files = {"RTE/train.tsv": RTE_TSV, "RTE/dev.tsv": RTE_TSV, "../evil.tsv": "x\n"}
    _serve(root, "RTE.zip", files)
    out = tmp_path / "raw"
    with pytest.raises(DataError, match=r"refusing '\.\.' component"):
        download_glue(["rte"], base, tmp_path / "cache", out)
    assert not (out / "glue" / "rte").exists()
    assert not list(tmp_path.rglob("evil.tsv"))


def test_safe_extract_zip_rules(tmp_path: Path) -> None:
    good = _zip(tmp_path / "good.zip", {"a/b.tsv": "1\n", "c.tsv": "2\n"})
    assert safe_extract_zip(good, tmp_path / "out") == ["a/b.tsv", "c.tsv"]
    assert (tmp_path / "out" / "a" / "b.tsv").read_text() == "1\n"
    assert safe_extract_zip(good, tmp_path / "one", members=["c.tsv"]) == ["c.tsv"]
    with pytest.raises(DataError, match="not in"):
        safe_extract_zip(good, tmp_path / "none", members=["missing.tsv"])
    bad = _zip(tmp_path / "abs.zip", {"/etc/evil.tsv": "x\n"})
    with pytest.raises(DataError, match="absolute path"):
        safe_extract_zip(bad, tmp_path / "abs")
    assert not (tmp_path / "abs").exists() and not (tmp_path / "none").exists()

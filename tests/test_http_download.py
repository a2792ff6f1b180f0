"""Resumable verified download and safe LibriSpeech extraction, against a local HTTP server."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from d2v.data.errors import DataError
from d2v.data.http import download
from d2v.data.librispeech import download_librispeech, read_split


@dataclass
class _State:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    cut_after: int | None = None  # bytes of the next response sent before the connection drops
    ignore_range: bool = False  # answer 200 with the whole file, as a server without Range does


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            state.requests.append((self.path, range_header))
            data = state.files.get(self.path)
            if data is None:
                self.send_error(404)
                return
            start = 0
            if range_header and not state.ignore_range:
                start = int(re.fullmatch(r"bytes=(\d+)-", range_header).group(1))
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            body = data[start:]
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if state.cut_after is not None:
                body, state.cut_after = body[: state.cut_after], None
                self.close_connection = True
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, _State]]:
    state = _State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        httpd.shutdown()
        httpd.server_close()


def _flac_bytes(seconds: float, freq: float) -> bytes:
    t = np.arange(int(16000 * seconds)) / 16000
    buf = io.BytesIO()
    sf.write(buf, (0.3 * np.sin(2 * np.pi * freq * t)), 16000, "PCM_16", format="FLAC")
    return buf.getvalue()


def _tar_gz(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _librispeech_tar(extra: dict[str, bytes] | None = None) -> bytes:
    chapter = "LibriSpeech/dev-clean/84/121123"
    entries = {
        "LibriSpeech/SPEAKERS.TXT": b"; ID | SEX | SUBSET | MINUTES | NAME\n",
        f"{chapter}/84-121123-0000.flac": _flac_bytes(0.5, 220),
        f"{chapter}/84-121123-0001.flac": _flac_bytes(0.7, 330),
        f"{chapter}/84-121123.trans.txt": (
            b"84-121123-0000 GO DO YOU HEAR\n84-121123-0001 BUT IN LESS\n"
        ),
    }
    return _tar_gz({**entries, **(extra or {})})


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_download_and_extract_librispeech(server, tmp_path: Path) -> None:
    url, state = server
    archive = _librispeech_tar()
    state.files["/dev-clean.tar.gz"] = archive
    out = tmp_path / "raw"
    stats = download_librispeech(
        url, ["dev-clean"], tmp_path / "cache", out, md5={"dev-clean": _md5(archive)}
    )
    assert stats["dev-clean"]["speakers"] == 1 and stats["dev-clean"]["chapters"] == 1
    assert (tmp_path / "cache" / "dev-clean.tar.gz").read_bytes() == archive
    assert (out / "SPEAKERS.TXT").is_file()
    utterances, skipped = read_split(out / "dev-clean")
    assert [u.id for u in utterances] == ["84-121123-0000", "84-121123-0001"]
    assert utterances[1].transcript == "BUT IN LESS" and utterances[1].speaker == "84"
    assert skipped["count"] == 0
    # A second run finds the verified archive in the cache and does not download it again.
    download_librispeech(
        url, ["dev-clean"], tmp_path / "cache", out, md5={"dev-clean": _md5(archive)}
    )
    assert len(state.requests) == 1


def test_interrupted_download_resumes_with_range(server, tmp_path: Path) -> None:
    url, state = server
    archive = _librispeech_tar()
    state.files["/dev-clean.tar.gz"] = archive
    state.cut_after = len(archive) // 3
    download_librispeech(
        url, ["dev-clean"], tmp_path / "cache", tmp_path / "raw", md5={"dev-clean": _md5(archive)}
    )
    assert state.requests[0][1] is None
    assert state.requests[1][1] == f"bytes={len(archive) // 3}-"
    assert (tmp_path / "cache" / "dev-clean.tar.gz").read_bytes() == archive
    assert not (tmp_path / "cache" / "dev-clean.tar.gz.part").exists()
    assert len(read_split(tmp_path / "raw" / "dev-clean")[0]) == 2


def test_server_without_range_restarts_and_416_means_complete(server, tmp_path: Path) -> None:
    url, state = server
    data = bytes(range(256)) * 40
    state.files["/blob.bin"] = data
    dest = tmp_path / "blob.bin"
    dest.with_name("blob.bin.part").write_bytes(b"stale bytes of another file")
    state.ignore_range = True
    assert download(f"{url}/blob.bin", dest, md5=_md5(data)).read_bytes() == data
    assert state.requests[-1][1] is not None  # it asked for a range; the 200 restarted the file
    dest.unlink()
    dest.with_name("blob.bin.part").write_bytes(data)  # an earlier run got every byte
    state.ignore_range = False
    assert download(f"{url}/blob.bin", dest, md5=_md5(data)).read_bytes() == data
    assert state.requests[-1][1] == f"bytes={len(data)}-"


def test_http_error_names_the_url(server, tmp_path: Path) -> None:
    url, _ = server
    with pytest.raises(DataError, match=r"HTTP 404 .*/missing\.tar\.gz"):
        download(f"{url}/missing.tar.gz", tmp_path / "missing.tar.gz")


def test_checksum_mismatch_leaves_nothing(server, tmp_path: Path) -> None:
    url, state = server
    state.files["/dev-clean.tar.gz"] = _librispeech_tar()
    cache, out = tmp_path / "cache", tmp_path / "raw"
    with pytest.raises(DataError, match=r"dev-clean\.tar\.gz.*expected 0{32}, got [0-9a-f]{32}"):
        download_librispeech(url, ["dev-clean"], cache, out, md5={"dev-clean": "0" * 32})
    assert not (cache / "dev-clean.tar.gz").exists()
    assert not (cache / "dev-clean.tar.gz.part").exists()
    assert not out.exists()


def test_archive_entry_escaping_the_target_is_refused(server, tmp_path: Path) -> None:
    url, state = server
    archive = _librispeech_tar({"../evil": b"owned"})
    state.files["/dev-clean.tar.gz"] = archive
    out = tmp_path / "work" / "raw"
    with pytest.raises(DataError, match=r"\.\./evil"):
        download_librispeech(url, ["dev-clean"], tmp_path / "cache", out, md5={"dev-clean": None})
    assert not out.exists()
    assert not list(tmp_path.rglob("evil"))
    assert [p.name for p in (tmp_path / "work").iterdir()] == []  # no temporary left either

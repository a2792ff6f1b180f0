"""Resumable, verified HTTP downloads for the data stages (LibriSpeech, GLUE).

A download streams into `<dest>.part`. If a `.part` is already there (an earlier run was cut off),
the request asks for the rest with `Range: bytes=N-`; a server that answers 200 instead of 206
sends the whole file again, so the `.part` is restarted; 416 means the `.part` already holds the
whole file. Only a file whose md5 matches is renamed onto `dest`, so nothing that looks complete
is ever left behind by a failed or corrupt download. Sizes are in bytes.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from d2v.data.archive import md5sum, verify_md5
from d2v.data.errors import DataError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20
_ATTEMPTS = 3  # a connection cut mid-file is resumed this many times before giving up
_USER_AGENT = "d2v-data/0.1 (+urllib)"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_NETWORK_ERRORS = (OSError, http.client.HTTPException)  # URLError, timeouts, resets are OSErrors


class _Interrupted(Exception):
    """The connection ended before the whole body arrived; the `.part` can be resumed."""


def _open(url: str, offset: int, timeout: float) -> http.client.HTTPResponse | None:
    """Open `url` from byte `offset`; None if the server says the range is past the end (416)."""
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and offset:
            return None
        raise DataError(f"HTTP {e.code} ({e.reason}) downloading {url}") from e
    except _NETWORK_ERRORS as e:
        reason = getattr(e, "reason", e)
        raise _Interrupted(f"cannot connect to {url}: {reason}") from e


def _resume_offset(response: http.client.HTTPResponse, offset: int, url: str) -> int:
    """Where the body of `response` starts in the file: `offset` for a 206, 0 for a full 200."""
    if not offset:
        return 0
    if response.status != 206:
        log.warning("%s ignored the Range request (HTTP %d): restarting", url, response.status)
        return 0
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if not match or int(match.group(1)) != offset:
        raise DataError(
            f"bad Content-Range {response.headers.get('Content-Range')!r} from {url} "
            f"for a request from byte {offset}"
        )
    return offset


def _fetch_once(url: str, part: Path, timeout: float, desc: str) -> None:
    """One request: append the rest of `url` to `part` (or restart it). Raises _Interrupted."""
    offset = part.stat().st_size if part.exists() else 0
    response = _open(url, offset, timeout)
    if response is None:
        log.info("%s: server reports %s already complete (%d bytes)", url, part, offset)
        return
    with response:
        offset = _resume_offset(response, offset, url)
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        written = offset
        with (
            open(part, "ab" if offset else "wb") as out,
            tqdm(total=total, initial=offset, unit="B", unit_scale=True, desc=desc) as bar,
        ):
            try:
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    written += len(chunk)
                    bar.update(len(chunk))
            except _NETWORK_ERRORS as e:
                raise _Interrupted(f"connection to {url} broke after {written} bytes: {e}") from e
    if total is not None and written < total:
        raise _Interrupted(f"connection to {url} closed after {written} of {total} bytes")


def download(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    timeout: float = 60.0,
    desc: str | None = None,
) -> Path:
    """Download `url` to `dest` (resuming a `.part` left by an earlier run) and verify its md5.

    An existing `dest` whose md5 matches (or any existing `dest` when `md5` is None) is kept and
    not downloaded again. `timeout`: seconds a connect or a read may stall. Raises DataError naming
    the url on an HTTP error or a connection that keeps breaking (the `.part` is kept, so a rerun
    resumes), and on a checksum mismatch (the `.part` is deleted, `dest` is not written).
    """
    dest = Path(dest)
    desc = desc or dest.name
    if dest.exists():
        if md5 is None:
            log.info("%s exists and no md5 is given: not downloaded again", dest)
            return dest
        if md5sum(dest) == md5.lower():
            log.info("%s exists with the expected md5: not downloaded again", dest)
            return dest
        log.warning("%s exists but its md5 is not %s: downloading it again", dest, md5)
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            _fetch_once(url, part, timeout, desc)
            break
        except _Interrupted as e:
            if attempt == _ATTEMPTS:
                raise DataError(f"{e}; kept {part}, run again to resume") from e
            log.warning("%s; resuming (attempt %d of %d)", e, attempt + 1, _ATTEMPTS)
    try:
        verify_md5(part, md5)
    except DataError as e:
        part.unlink(missing_ok=True)
        raise DataError(f"download of {url} into {dest} is corrupt, deleted it: {e}") from e
    os.replace(part, dest)
    log.info("downloaded %s to %s", url, dest)
    return dest

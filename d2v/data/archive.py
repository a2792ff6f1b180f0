"""Archive checks and safe tar extraction.

A tar from outside is untrusted: every entry is checked before it is written, and the whole
extraction goes to a temporary folder that is renamed onto the target only when it is complete.
Refused: absolute paths, `..` components, links (soft or hard) that resolve outside the target
(each link is checked when written and every link again against the finished tree, since a later
entry can change where an earlier link leads), device files and fifos, an entry that is a folder
and then a file (or the reverse), and output beyond `ExtractLimits` (total and per-member
decompressed bytes, and the decompressed/compressed ratio: a small archive must not fill the disk).
Tars are read as streams (one sequential pass), which also lets a tar nested in another tar
(ImageNet's train archive: one tar per class) be extracted without a copy.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import posixpath
import tarfile
import zlib
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tqdm import tqdm

from d2v.atomic import atomic_path
from d2v.data.errors import DataError

log = logging.getLogger(__name__)

_CHUNK = 4 << 20
_PROGRESS_MIN_BYTES = 256 << 20  # a progress bar only where hashing takes more than a moment
_TAR_ERRORS = (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile)


@dataclass(frozen=True)
class ExtractLimits:
    """What one extraction may write. The defaults pass the full datasets (ImageNet's train tar:
    138 GB of ~110 KB JPEGs, stored uncompressed; LibriSpeech 960 h: ~60 GB of FLAC) and refuse
    decompression bombs (ratios of 1000 and more)."""

    max_total_bytes: int = 2 << 40  # 2 TiB
    max_member_bytes: int = 64 << 30  # 64 GiB
    max_ratio: float = 200.0  # decompressed / compressed bytes, checked past `ratio_after`
    ratio_after: int = 64 << 20  # small outputs may be very compressible (a folder of zeros)


DEFAULT_LIMITS = ExtractLimits()
GiB = 1 << 30


class _Budget:
    """Counts the bytes an extraction writes against its limits, and the bytes it read."""

    def __init__(self, limits: ExtractLimits, archive: str, source: IO[bytes] | None = None):
        self.limits, self.archive, self.source = limits, archive, source
        self.total = 0
        self.start = _tell(source)

    def add(self, member: str, member_bytes: int, n: int, compressed: int | None = None) -> None:
        self.total += n
        lim, where = self.limits, f"entry {member!r} in {self.archive}"
        if member_bytes > lim.max_member_bytes:
            raise DataError(f"refusing {where}: over {lim.max_member_bytes / GiB:g} GiB")
        if self.total > lim.max_total_bytes:
            raise DataError(f"refusing {where}: total over {lim.max_total_bytes / GiB:g} GiB")
        if compressed is None and self.start is not None:
            compressed = max(_tell(self.source) - self.start, 1)
        if compressed and self.total > lim.ratio_after and self.total / compressed > lim.max_ratio:
            raise DataError(
                f"refusing {where}: decompresses over {lim.max_ratio:g}x (a decompression bomb?)"
            )


def _tell(f: IO[bytes] | None) -> int | None:
    try:
        return f.tell() if f is not None else None
    except (OSError, AttributeError, ValueError):
        return None


def copy_bounded(src: IO[bytes], out: IO[bytes], member: str, budget: _Budget | _ZipMember) -> None:
    written = 0
    while chunk := src.read(_CHUNK):
        written += len(chunk)
        budget.add(member, written, len(chunk))
        out.write(chunk)


def md5sum(path: str | os.PathLike) -> str:
    """Hex md5 of a file, read in 4 MiB chunks (ImageNet's train tar is 138 GB)."""
    path = Path(path)
    digest = hashlib.md5()
    size = path.stat().st_size
    with (
        open(path, "rb") as f,
        tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=f"md5 {path.name}",
            disable=size < _PROGRESS_MIN_BYTES,
        ) as bar,
    ):
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def verify_md5(path: str | os.PathLike, expected: str | None) -> None:
    """Raise DataError if the md5 of `path` is not `expected`; `expected=None` skips the check."""
    if expected is None:
        log.info("no md5 given for %s: checksum not verified", path)
        return
    actual = md5sum(path)
    if actual != expected.lower():
        raise DataError(f"md5 mismatch for {path}: expected {expected}, got {actual}")
    log.info("md5 ok for %s", path)


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def _checked_target(member: tarfile.TarInfo, dest: Path, archive: str) -> Path:
    """The path `member` would be written to under `dest`; DataError if the entry is unsafe.

    Checked against the folder as it is now (earlier entries may have made links), so call it just
    before writing each entry.
    """
    name = member.name
    where = f"entry {name!r} in {archive}"
    if member.isdev():
        raise DataError(f"refusing device file or fifo {where}")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise DataError(f"refusing entry of unknown type {member.type!r}: {where}")
    if not name or name.startswith("/") or os.path.isabs(name):
        raise DataError(f"refusing absolute path {where}")
    if ".." in name.split("/"):
        raise DataError(f"refusing '..' component in {where}")
    root = os.path.realpath(dest)
    norm = posixpath.normpath(name)
    if norm == ".":
        if not member.isdir():
            raise DataError(f"refusing non-folder entry for the archive root: {where}")
        return dest
    target = dest / norm
    if not _inside(os.path.realpath(target.parent), root):
        raise DataError(f"refusing {where}: its folder resolves outside {dest}")
    if member.issym() or member.islnk():
        link = member.linkname
        if not link or os.path.isabs(link):
            raise DataError(f"refusing link to absolute path {link!r}: {where}")
        # A symlink resolves from its own folder; a hard link names a path from the archive root.
        base = posixpath.dirname(name) if member.issym() else ""
        lexical = posixpath.normpath(posixpath.join(base, link))
        resolved = os.path.realpath(os.path.join(dest, base, link))
        if lexical == ".." or lexical.startswith("../") or not _inside(resolved, root):
            raise DataError(f"refusing link to {link!r} outside the target: {where}")
    return target


def _write_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, target: Path, dest: Path, budget: _Budget
) -> None:
    where = f"entry {member.name!r} in {budget.archive}"
    is_dir = os.path.isdir(target) and not os.path.islink(target)
    if member.isdir():
        if os.path.lexists(target) and not is_dir:
            raise DataError(f"refusing {where}: a folder where an earlier entry wrote a file")
        target.mkdir(parents=True, exist_ok=True)
        return
    if is_dir:
        raise DataError(f"refusing {where}: a file where an earlier entry made a folder")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise DataError(f"refusing {where}: its folder is a file from an earlier entry") from None
    if os.path.lexists(target):  # a later entry replaces an earlier one, as tar does
        target.unlink()
    if member.issym():
        os.symlink(member.linkname, target)
    elif member.islnk():
        os.link(dest / posixpath.normpath(member.linkname), target)
    else:
        src = tar.extractfile(member)
        assert src is not None  # regular files always have data
        with src, open(target, "wb") as out:
            copy_bounded(src, out, member.name, budget)


def _check_links(dest: Path, links: list[str], archive: str) -> None:
    """Every symlink of the finished tree still resolves inside `dest` (a later entry may have
    turned a harmless link into a chain that escapes)."""
    root = os.path.realpath(dest)
    for name in links:
        path = dest / posixpath.normpath(name)
        if os.path.islink(path) and not _inside(os.path.realpath(path), root):
            raise DataError(
                f"refusing link {name!r} in {archive}: with later entries it resolves outside "
                "the target"
            )


def extract_tar_fileobj(
    fileobj: IO[bytes],
    dest: str | os.PathLike,
    members: Collection[str] | None = None,
    archive: str = "<stream>",
    progress: bool = False,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> list[str]:
    """Extract a tar (any compression) read from an open binary file object into `dest`.

    Writes straight into `dest` (created if needed): call it on a folder that is itself inside an
    atomic output, as the ImageNet and LibriSpeech writers do. Every entry is checked, even ones
    not in `members`. `members`: names to extract (default all); DataError if one is absent.
    `archive` names the source in error messages. Returns the names of the files and links
    extracted (not folders), in archive order.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    wanted = None if members is None else {posixpath.normpath(m) for m in members}
    extracted: list[str] = []
    links: list[str] = []
    seen: set[str] = set()
    budget = _Budget(limits, archive, fileobj)
    try:
        with (
            tarfile.open(fileobj=fileobj, mode="r|*") as tar,
            tqdm(desc=f"extract {archive}", unit=" files", disable=not progress) as bar,
        ):
            for member in tar:
                target = _checked_target(member, dest, archive)
                norm = posixpath.normpath(member.name)
                if wanted is not None and norm not in wanted:
                    continue
                _write_member(tar, member, target, dest, budget)
                if member.issym():
                    links.append(member.name)
                seen.add(norm)
                if not member.isdir():
                    extracted.append(member.name)
                    bar.update(1)
    except _TAR_ERRORS as e:
        raise DataError(f"cannot read tar {archive}: {e}") from e
    _check_links(dest, links, archive)
    if wanted is not None:
        missing = wanted - seen
        if missing:
            shown = ", ".join(sorted(missing)[:5])
            raise DataError(f"{len(missing)} requested entries not found in {archive}: {shown}")
    return extracted


class _ZipMember:
    """A zip member's share of the budget: its own compressed size is known up front."""

    def __init__(self, budget: _Budget, info: zipfile.ZipInfo):  # noqa: F821 (imported lazily)
        self.budget, self.compressed = budget, max(info.compress_size, 1)

    def add(self, member: str, member_bytes: int, n: int, compressed: int | None = None) -> None:
        self.budget.add(member, member_bytes, n, compressed=None)
        lim = self.budget.limits
        if member_bytes > lim.ratio_after and member_bytes / self.compressed > lim.max_ratio:
            raise DataError(
                f"refusing entry {member!r} in {self.budget.archive}: decompresses over "
                f"{lim.max_ratio:g}x (a decompression bomb?)"
            )


def _checked_zip_target(
    info: zipfile.ZipInfo,  # noqa: F821 (zipfile is imported where the function is used)
    dest: Path,
    archive: str,
) -> Path | None:
    """Where zip entry `info` goes under `dest` (None for the root folder); DataError if unsafe.

    The same rules as for tar entries: no absolute paths (nor Windows drive letters or
    backslashes), no `..` components, and no symlinks (a zip marks them in the Unix mode bits).
    """
    import stat  # imported here: this section was appended to the module

    name = info.filename
    where = f"entry {name!r} in {archive}"
    if not name or name.startswith("/") or os.path.isabs(name) or "\\" in name or ":" in name:
        raise DataError(f"refusing absolute path {where}")
    if ".." in name.split("/"):
        raise DataError(f"refusing '..' component in {where}")
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip was not made on Unix
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise DataError(f"refusing link or special file {where}")
    norm = posixpath.normpath(name)
    if norm == ".":
        return None
    target = dest / norm
    if not _inside(os.path.realpath(target), os.path.realpath(dest)):
        raise DataError(f"refusing {where}: it resolves outside {dest}")
    return target


def safe_extract_zip(
    zip_path: str | os.PathLike,
    dest: str | os.PathLike,
    members: Collection[str] | None = None,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> list[str]:
    """Extract the zip at `zip_path` into `dest` atomically: `dest` appears only when complete.

    Every entry is checked before anything is written (see `_checked_zip_target`), even ones not in
    `members`; every extracted file's CRC-32 is checked as it is read (zipfile raises on a
    mismatch). `members`: names to extract (default all); DataError if one is absent. An existing
    `dest` is replaced. Returns the names of the files extracted (not folders), in archive order.
    """
    import zipfile  # imported here: this section was appended to the module

    archive = str(zip_path)
    wanted = None if members is None else {posixpath.normpath(m) for m in members}
    extracted: list[str] = []
    budget = _Budget(limits, archive)
    try:
        with zipfile.ZipFile(zip_path) as zf, atomic_path(dest) as tmp:
            tmp.mkdir(parents=True)
            infos = zf.infolist()
            targets = [_checked_zip_target(info, tmp, archive) for info in infos]
            names = {posixpath.normpath(info.filename) for info in infos}
            if wanted is not None and not wanted <= names:
                shown = ", ".join(sorted(wanted - names)[:5])
                raise DataError(
                    f"{len(wanted - names)} requested entries not in {archive}: {shown}"
                )
            for info, target in zip(infos, targets, strict=True):
                if target is None:
                    continue
                if wanted is not None and posixpath.normpath(info.filename) not in wanted:
                    continue
                if os.path.isdir(target) != info.is_dir() and os.path.lexists(target):
                    raise DataError(
                        f"refusing entry {info.filename!r} in {archive}: a folder "
                        "and a file at the same path"
                    )
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise DataError(
                        f"refusing entry {info.filename!r} in {archive}: its folder is a file"
                    ) from None
                with zf.open(info) as src, open(target, "wb") as out:
                    copy_bounded(src, out, info.filename, _ZipMember(budget, info))
                extracted.append(info.filename)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error) as e:
        raise DataError(f"cannot read zip {archive}: {e}") from e
    return extracted

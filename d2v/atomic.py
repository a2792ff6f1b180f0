"""Atomic outputs: write to a temporary sibling, then rename, so an interrupted stage never leaves
a half-written file or folder that DVC or a later stage could take as complete. `read_json` reads
a JSON output back, naming a file that is not whole."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from d2v.data.errors import readable

log = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it onto `path` (file or folder).

    On an exception the temporary is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    restore_interrupted_swap(path)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    )
    target = tmp / path.name
    try:
        yield target
        if not target.exists():
            raise FileNotFoundError(f"nothing was written to {target} for {path}")
        if path.is_dir() and not path.is_symlink():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            target.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def restore_interrupted_swap(path: Path) -> None:
    """A folder swap killed between its two renames leaves only `.name.old`: put it back, so
    that the last complete output is never the one thrown away."""
    old = path.with_name(f".{path.name}.old")
    if not old.exists():
        return
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)  # the swap finished; only its clean-up did not
    else:
        old.rename(path)
        log.warning("restored %s from %s (a run was killed while replacing it)", path, old.name)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporaries of `path` left by killed writers (their process is gone)."""
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name.removeprefix(f".{path.name}.").split(".", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue  # a live writer's (or a rank's of this run)
        shutil.rmtree(tmp, ignore_errors=True)
        removed.append(tmp)
    if removed:
        log.info("removed %d temporaries of %s left by killed runs", len(removed), path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike, remedy: str) -> dict[str, Any]:
    """The JSON object in `path`; one that does not parse, or is not an object, raises DataError
    naming it and `remedy`."""
    with readable(path, remedy):
        obj = json.loads(Path(path).read_text())
        if not isinstance(obj, dict):
            raise ValueError(f"a JSON {type(obj).__name__}, not an object")
        return obj

"""Lines of a text file, streamed with a bound on each: one runaway line (a TSV row or corpus line
of gigabytes) is read past in bounded chunks and reported, never held whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

MAX_LINE_BYTES = 1 << 20  # GLUE rows and corpus documents are under 100 KB


def bounded_lines(path: Path, limit: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """(line number from 1, bytes without the newline) of `path`; None for a line over `limit`."""
    with open(path, "rb") as f:
        number = 0
        while line := f.readline(limit + 1):
            number += 1
            if len(line) > limit and not line.endswith(b"\n"):
                while (more := f.readline(limit)) and not more.endswith(b"\n"):
                    pass
                yield number, None
                continue
            yield number, line.removesuffix(b"\n")

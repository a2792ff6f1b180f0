"""Errors a data stage stops on, with messages that say which file and how to fix it."""

from __future__ import annotations

import contextlib
import os
import pickle
from collections.abc import Iterator
from zipfile import BadZipFile

from d2v.config.base import ConfigError


class DataError(RuntimeError):
    """A data problem that stops a stage (bad checksum, truncated file, unsafe archive entry).

    The message always names the file involved.
    """


class SourceMissingError(DataError):
    """A data source is not on this machine.

    The message names what is missing (a Debian package or a local path) and the param that switches
    the source, so the user can either install it or pick another source.
    """

    def __init__(self, missing: str, param: str, detail: str = "") -> None:
        self.missing = missing
        self.param = param
        self.detail = detail
        message = f"data source missing: {missing}; install it or set `{param}` to another source"
        if detail:
            message += f" ({detail})"
        super().__init__(message)

    def __reduce__(self) -> tuple:
        # Keep the error picklable (it may be raised inside a worker process).
        return (type(self), (self.missing, self.param, self.detail))


# what a reader raises on a file that is not whole (truncated, foreign, empty): torch.load,
# np.load, zipfile, json, and indexing what it read (a key missing, a list for a mapping); an
# OSError too when it names no file (one that names it is caught as such)
UNREADABLE = (
    RuntimeError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    ValueError,
    pickle.UnpicklingError,
    BadZipFile,
)


def short(e: BaseException) -> str:
    """An error's message on one line, at most 200 characters."""
    return " ".join(str(e).split())[:200] or type(e).__name__


@contextlib.contextmanager
def readable(path: str | os.PathLike, remedy: str) -> Iterator[None]:
    """A reader's error on `path` inside becomes a DataError naming the file and `remedy`."""
    try:
        yield
    except (DataError, ConfigError):  # they name their own subject
        raise
    except (*UNREADABLE, OSError) as e:
        if isinstance(e, OSError) and e.filename is not None:
            raise  # one it cannot open (missing, a folder, no permission): the error names it
        raise DataError(f"{path}: unreadable ({short(e)}); {remedy}") from e

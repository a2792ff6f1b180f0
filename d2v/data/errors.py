"""Errors a data stage stops on, with messages that say which file and how to fix it."""

from __future__ import annotations


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

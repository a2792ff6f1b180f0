"""The CLI's boundary between expected failures and bugs.

An expected failure (bad params, bad data, an output that cannot be written, a tracking store or
study storage that refuses) ends a stage with exit code 2 and one line naming its subject; the
traceback goes to the debug log (`--debug`). Anything else is a bug and keeps its traceback.

Code that knows the subject of what it is about to do (a storage URL, a file) says so with
`about(...)`; otherwise the subject is read off the error (an OSError's file) or the library whose
frames raised it (MLflow, Optuna).
"""

from __future__ import annotations

import contextlib
import errno
import os
import traceback
from collections.abc import Iterator

from d2v.config import ConfigError
from d2v.data.errors import DataError

EXIT_EXPECTED = 2
_NOTE = "d2v subject: "

# errors of the stores and services a stage uses, by qualified class name, so that classifying an
# error never imports them
_SERVICE_ERRORS = {
    "mlflow.exceptions.MlflowException": "MLflow tracking store",
    "sqlalchemy.exc.SQLAlchemyError": "database",
    "optuna.exceptions.StorageInternalError": "Optuna storage",
    "optuna.exceptions.DuplicatedStudyError": "Optuna storage",
    "sqlite3.Error": "database",
    "requests.exceptions.RequestException": "service",
}
_LIBRARIES = {"mlflow": "MLflow tracking store", "optuna": "Optuna storage"}


@contextlib.contextmanager
def about(subject: str) -> Iterator[None]:
    """Name the subject of any error raised inside (the innermost `about` wins); a ConfigError or
    DataError names its own (a param, a file) and keeps it."""
    try:
        yield
    except Exception as e:
        named = isinstance(e, (ConfigError, DataError))
        if not named and not any(n.startswith(_NOTE) for n in getattr(e, "__notes__", [])):
            e.add_note(_NOTE + subject)
        raise


def expected_failure(e: BaseException) -> str | None:
    """The one-line message for an expected failure; None for a bug."""
    subject = _noted_subject(e)
    if isinstance(e, (ConfigError, DataError)):
        text = str(e)
    elif isinstance(e, OSError) and not _is_service(e):
        text = _os_error(e)
    elif _is_service(e):
        kind = _service_kind(e)
        subject = subject or _library_subject(e) or kind
        text = _first_line(str(e)) or type(e).__name__
    else:
        return None
    text = " ".join(text.split())  # one line, whatever the library wrote
    return f"{subject}: {text}" if subject and subject not in text else text


def format_traceback(e: BaseException) -> str:
    return "".join(traceback.format_exception(e))


def _noted_subject(e: BaseException) -> str | None:
    for note in getattr(e, "__notes__", []):
        if note.startswith(_NOTE):
            return note.removeprefix(_NOTE)
    return None


def _qualnames(e: BaseException) -> list[str]:
    return [f"{c.__module__}.{c.__qualname__}" for c in type(e).__mro__]


def _is_service(e: BaseException) -> bool:
    return any(q in _SERVICE_ERRORS for q in _qualnames(e))


def _service_kind(e: BaseException) -> str:
    return next(_SERVICE_ERRORS[q] for q in _qualnames(e) if q in _SERVICE_ERRORS)


def _library_subject(e: BaseException) -> str | None:
    """The store whose library raised `e` (the outermost d2v-facing library in the traceback)."""
    for frame in traceback.extract_tb(e.__traceback__):
        parts = frame.filename.split(os.sep)
        for lib, subject in _LIBRARIES.items():
            if lib in parts:
                if lib == "mlflow":
                    return f"{subject} {_mlflow_uri()}".strip()
                return subject
    return None


def _mlflow_uri() -> str:
    from d2v.tracking import active_uri

    return active_uri()


def _os_error(e: OSError) -> str:
    reason = e.strerror or _first_line(str(e)) or type(e).__name__
    if e.errno == errno.ENOSPC:
        reason = "no space left on device"
    names = [str(n) for n in (e.filename, e.filename2) if n is not None]
    if not names:
        return _first_line(str(e)) or reason
    return f"{' -> '.join(names)}: {reason}"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")

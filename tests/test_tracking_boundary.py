"""Only the tracking modules talk to MLflow: the writer (`d2v/tracking.py`) and the report's
reader (`d2v/report/sources.py`); training loops get a logging callback instead."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "d2v"
TRACKING_MODULES = {"tracking.py", "report/sources.py"}
IMPORTS_MLFLOW = re.compile(r"^\s*(import mlflow|from mlflow[\s.])", re.MULTILINE)


def test_only_the_tracking_modules_import_mlflow() -> None:
    offenders = sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if IMPORTS_MLFLOW.search(p.read_text())
    )
    assert set(offenders) == TRACKING_MODULES, offenders


def test_nothing_reaches_into_the_trackers_mlflow() -> None:
    offenders = sorted(
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if re.search(r"tracker\.mlflow\b", p.read_text())
    )
    assert offenders == []

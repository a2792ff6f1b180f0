"""Only the tracking modules talk to MLflow: the writer (`d2v/tracking.py`) and the report's
reader (`d2v/report/sources.py`); training loops get a logging callback instead. What a run is
tagged with. (Logged models, the registry and a moved store: tests/test_train.py.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from d2v.tracking import git_revision, run_origin

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


def test_runs_name_the_dvc_experiment_and_git_revision(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("DVC_EXP_NAME", "DVC_EXP_BASELINE_REV", "DVC_STAGE"):
        monkeypatch.delenv(var, raising=False)
    plain = run_origin()  # `dvc repro` or by hand: the git revision only
    assert plain == {"git_revision": git_revision(), "mlflow.source.git.commit": git_revision()}
    # what `dvc exp run` sets for each stage command (dvc/repo/experiments/queue/base.py)
    monkeypatch.setenv("DVC_EXP_NAME", "tipsy-bolt")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    monkeypatch.setenv("DVC_STAGE", "pretrain@vision")
    tags = run_origin()
    assert tags["dvc_experiment"] == "tipsy-bolt" and tags["dvc_baseline_rev"] == "a" * 40
    assert tags["dvc_stage"] == "pretrain@vision"

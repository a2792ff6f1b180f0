"""Only the tracking modules talk to MLflow: the writer (`d2v/tracking.py`) and the report's
reader (`d2v/report/sources.py`); training loops get a logging callback instead. What a run is
tagged with. (Logged models, the registry and a moved store: tests/test_train.py.)"""

from __future__ import annotations

import io
import re
from pathlib import Path

import cloudpickle
import pytest
import torch
from torch.nn.utils import parametrize

from d2v.encoder import fold_parametrizations
from d2v.modalities.audio import ConvPositions
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


def test_weight_norm_is_folded_before_a_model_is_pickled() -> None:
    """Speech's conv positions carry a weight-norm parametrization, which torch refuses to
    pickle: folded, they have plain weights, the same outputs, and pickle as MLflow does it."""
    torch.manual_seed(0)
    x = torch.randn(2, 10, 16)
    positions = ConvPositions(dim=16, kernel=8, groups=4).eval()
    with torch.no_grad():
        want = positions(x)
    with pytest.raises(RuntimeError, match="parametrized"):
        torch.save(positions, io.BytesIO(), pickle_module=cloudpickle)  # as MLflow saves it
    plain = fold_parametrizations(positions)
    assert not parametrize.is_parametrized(plain.conv)
    buf = io.BytesIO()
    torch.save(plain, buf, pickle_module=cloudpickle)
    buf.seek(0)
    with torch.no_grad():
        assert torch.allclose(torch.load(buf, weights_only=False)(x), want, atol=1e-6)


def test_a_history_logged_afterwards_reads_back_step_by_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`log_history` (a worker's curve, batched) stores every (step, metric) value, also past
    MLflow's 1000 values per batch."""
    from mlflow import MlflowClient

    from d2v.config import TrackingConfig
    from d2v.tracking import Tracker

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # MLflow sets it: undone after the test
    tracker = Tracker(TrackingConfig(uri=uri, experiment="t"))
    history = [(step, {"train_loss": 1.0 / step, "lr": 0.5}) for step in range(1, 601)]
    with tracker.run("curve") as run_id:
        tracker.log_history(history)
    client = MlflowClient(uri)
    losses = client.get_metric_history(run_id, "train_loss")
    assert sorted((m.step, m.value) for m in losses) == [(s, 1.0 / s) for s in range(1, 601)]
    assert len(client.get_metric_history(run_id, "lr")) == 600

"""Runs as pandas frames, read from MLflow only (never from `metrics/`, which may be stale or
absent): one row per run, columns `params.*`, `metrics.*` (last value), `tags.*`."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import pandas as pd

from d2v.failures import about

log = logging.getLogger(__name__)

# The columns mlflow.search_runs gives every frame, empty or not.
BASE_COLUMNS = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
HISTORY_KEYS = ("loss", "tau", "lr", "target_std", "pred_std")


@contextlib.contextmanager
def _tracking(uri: str) -> Iterator[None]:
    """Point mlflow's module functions at `uri` for the block, then back. `set_tracking_uri` also
    writes MLFLOW_TRACKING_URI: restoring `get_tracking_uri()` (MLflow's default where none was
    set) would leave that default behind for every store opened later in the process; None
    unsets it again."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)


def load_runs(uri: str, experiment: str, filter_string: str | None = None) -> pd.DataFrame:
    """All runs of `experiment` (active ones), newest first; empty if the experiment is missing."""
    import mlflow

    with _tracking(uri):
        if mlflow.get_experiment_by_name(experiment) is None:
            log.warning("experiment %r not found in %s", experiment, uri)
            return pd.DataFrame(columns=BASE_COLUMNS)
        # the store answered above: an error now is the filter's (a quote missing, ==)
        with about(f"--filter {filter_string!r}") if filter_string else contextlib.nullcontext():
            df = mlflow.search_runs(
                experiment_names=[experiment],
                filter_string=filter_string or "",
                order_by=["attributes.start_time DESC"],
            )
    log.info("loaded %d runs of %r from %s", len(df), experiment, uri)
    return in_stable_order(df)


def in_stable_order(df: pd.DataFrame) -> pd.DataFrame:
    """Rows newest first, ties by run id; columns sorted after the base ones. MLflow gives
    columns in an order that changes between processes (it collects keys in sets), so without
    this a rebuild from the same store gives another report."""
    df = df.sort_values(["start_time", "run_id"], ascending=[False, True], kind="stable")
    base = [c for c in BASE_COLUMNS if c in df.columns]
    return df[base + sorted(c for c in df.columns if c not in base)].reset_index(drop=True)


def tag(runs: pd.DataFrame, name: str) -> pd.Series:
    """The tag column `name` as strings ('' where unset), aligned with `runs`."""
    col = f"tags.{name}"
    if col not in runs.columns:
        return pd.Series([""] * len(runs), index=runs.index, dtype=object)
    return runs[col].fillna("").astype(str)


def stage_runs(runs: pd.DataFrame, stage: str) -> pd.DataFrame:
    """The runs tagged with `stage` (an empty frame stays empty)."""
    return runs[tag(runs, "stage") == stage]


def metric_history(uri: str, run_id: str, keys: tuple[str, ...] = HISTORY_KEYS) -> pd.DataFrame:
    """Per-step metrics of one run: columns step, key, value (keys never logged are absent)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    rows = [
        {"step": m.step, "key": key, "value": m.value}
        for key in keys
        for m in client.get_metric_history(run_id, key)
    ]
    return pd.DataFrame(rows, columns=["step", "key", "value"])

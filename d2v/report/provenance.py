"""Which run produced a headline row: the MLflow evaluate run whose logged means are the row's,
and the git revision or DVC experiment that run was tagged with (d2v.tracking.run_origin).

The headline reads the evaluate stage's metrics files, which name no run; the evaluate run logs
the same means as `<init>_<metric>` (the GLUE run as `<init>_glue` or `<init>_glue_partial`), so
the run that wrote a file is the one whose logged values equal the file's. The newest such run
when several do (a forced rerun with the same result), never merely the newest run of the task:
that may belong to another experiment than the one in the workspace.
"""

from __future__ import annotations

import math

import pandas as pd

from d2v.headline import Row
from d2v.report.sources import stage_runs, tag

# A headline row's metric as the evaluate run logged it (the GLUE row's `avg` is one of these).
GLUE_KEYS = ("glue", "glue_partial")


def _logged_keys(row: Row) -> tuple[str, ...]:
    return GLUE_KEYS if row.task == "glue" else (row.metric,)


def _equal(logged: pd.Series, value: float) -> pd.Series:
    return logged.map(lambda v: isinstance(v, float) and math.isclose(v, value, rel_tol=1e-9))


def producing_run(runs: pd.DataFrame, row: Row) -> pd.Series | None:
    """The top-level finished evaluate run of `row.task` that logged the row's two means; the
    newest one when several did (`runs` is newest first); None when none did."""
    if runs.empty:
        return None
    evaluate = stage_runs(runs, "evaluate")
    mine = evaluate[
        (tag(evaluate, "task") == row.task)
        & (tag(evaluate, "mlflow.parentRunId") == "")
        & (evaluate["status"] == "FINISHED")
    ]
    for key in _logged_keys(row):
        cols = [f"metrics.pretrained_{key}", f"metrics.scratch_{key}"]
        if mine.empty or not set(cols) <= set(mine.columns):
            continue
        hit = mine[_equal(mine[cols[0]], row.pretrained) & _equal(mine[cols[1]], row.scratch)]
        if not hit.empty:
            return hit.iloc[0]
    return None


def run_tag(run: pd.Series, name: str) -> str:
    """One run's tag `name` ('' where unset: a frame holds NaN for a tag other runs have)."""
    value = run.get(f"tags.{name}")
    return "" if value is None or pd.isna(value) else str(value)


def origin(run: pd.Series) -> str:
    """`exp <name> (<rev7>)` for a run made inside `dvc exp run`, else `git <rev7>` (`no git
    revision` for a run made outside a repo with commits)."""
    rev = run_tag(run, "git_revision")
    rev = rev[:7] if rev not in ("", "unknown") else ""
    exp = run_tag(run, "dvc_experiment")
    if exp:
        return f"exp {exp} ({rev or 'no commit'})"
    return f"git {rev}" if rev else "no git revision"


def ui_path(run: pd.Series) -> str:
    """The run's page in `mlflow ui` (after the server's address)."""
    return f"#/experiments/{run['experiment_id']}/runs/{run['run_id']}"


def produced_by(run: pd.Series | None) -> str:
    """The headline's short provenance cell."""
    if run is None:
        return "no MLflow run logged these values"
    return f"{origin(run)}, run {run['run_id'][:8]}"

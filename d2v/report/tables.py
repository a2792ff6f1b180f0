"""Result tables as pandas frames, computed from the runs frame of `sources.load_runs`.

Grouping is by tags (modality, task, init, seed, metric names logged), never by hard-coded task
names, so a new modality or task shows up without code changes. Collapsed runs are dropped from
every result here; `collapsed_runs` lists them for the report's flag section.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from d2v.config import ConfigError
from d2v.report.sources import stage_runs, tag


def collapsed_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs tagged collapsed=true (pretrain runs or sweep trials)."""
    if runs.empty:
        return pd.DataFrame(columns=["run_id"])
    return runs[tag(runs, "collapsed").str.lower() == "true"]


def _excluded(runs: pd.DataFrame) -> pd.Series:
    """Collapsed runs, and pretrained-init runs built on a collapsed pretrain run."""
    bad = set(collapsed_runs(runs)["run_id"])
    on_bad = tag(runs, "pretrain_run_id").isin(bad) & (tag(runs, "init") == "pretrained")
    return runs["run_id"].isin(bad) | on_bad


def eval_results(runs: pd.DataFrame) -> pd.DataFrame:
    """Long frame of per-seed downstream metrics: modality, task, dataset, init, seed, metric,
    value, run_id. Only evaluate child runs (those with an `init` tag); a re-run of the same
    (task, init, seed) supersedes the older one (`runs` is newest first)."""
    cols = ["modality", "task", "dataset", "init", "seed", "metric", "value", "run_id"]
    if runs.empty:
        return pd.DataFrame(columns=cols)
    ev = runs[(tag(runs, "stage") == "evaluate") & (tag(runs, "init") != "") & ~_excluded(runs)]
    keys = {k: tag(ev, k) for k in ("modality", "task", "dataset", "init", "seed")}
    ev = ev.assign(**keys).drop_duplicates(["modality", "task", "init", "seed"], keep="first")
    metric_cols = [c for c in ev.columns if c.startswith("metrics.")]
    long = ev.melt(
        id_vars=["modality", "task", "dataset", "init", "seed", "run_id"],
        value_vars=metric_cols,
        var_name="metric",
    ).dropna(subset=["value"])
    long["metric"] = long["metric"].str.removeprefix("metrics.")
    return long[cols].reset_index(drop=True)


def seed_summary(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and count over seeds per modality, task, metric, init."""
    keys = ["modality", "task", "dataset", "metric", "init"]
    if results.empty:
        return pd.DataFrame(columns=[*keys, "mean", "std", "n"])
    g = results.groupby(keys, sort=True)["value"]
    return g.agg(mean="mean", std=lambda v: v.std(ddof=1), n="count").reset_index()


def fmt_mean_std(mean: float, std: float, n: int) -> str:
    if n == 0 or math.isnan(mean):
        return "missing"
    if n == 1 or math.isnan(std):
        return f"{mean:.3f} (n=1)"
    return f"{mean:.3f} ± {std:.3f} (n={n})"


def fmt(x: object) -> str:
    if isinstance(x, float):
        return "" if math.isnan(x) else f"{x:.4g}"
    return "" if x is None else str(x)


def pretrain_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Non-collapsed pretrain runs with their last logged values."""
    if runs.empty:
        return pd.DataFrame()
    pre = runs[(tag(runs, "stage") == "pretrain") & ~_excluded(runs)]
    cols = {
        "run_id": "run",
        "tags.modality": "modality",
        "tags.model": "model",
        "tags.data_source": "data",
        "metrics.loss": "final loss",
        "metrics.target_std": "target std",
        "metrics.pred_std": "pred std",
        "metrics.target_r2": "target R2",
        "metrics.copy_r2": "copy-nearest R2",
        "metrics.interp_r2": "interpolation R2",
        "metrics.target_autocorr": "target autocorr",
        "metrics.wall_s": "wall s",
        "metrics.mean_samples_per_s": "samples/s",
    }
    present = {k: v for k, v in cols.items() if k in pre.columns}
    return pre[list(present)].rename(columns=present)


@dataclass
class SweepView:
    parent: pd.Series
    trials: pd.DataFrame  # child runs, all states
    swept: list[str]  # params.* columns that the sweep varied
    direction: str  # maximize | minimize

    @property
    def counts(self) -> dict[str, int]:
        """Complete / pruned / failed: the parent's metrics, else counted from trial tags."""
        out = {}
        states = tag(self.trials, "state").str.upper()
        for name, key in (("complete", "COMPLETE"), ("pruned", "PRUNED"), ("failed", "FAIL")):
            v = self.parent.get(f"metrics.trials_{key.lower()}")
            out[name] = int(v) if v is not None and not pd.isna(v) else int((states == key).sum())
        return out

    def usable(self) -> pd.DataFrame:
        """Complete, non-collapsed trials with a value."""
        t = self.trials
        if t.empty or "metrics.value" not in t.columns:
            return t.iloc[0:0]
        ok = (tag(t, "state").str.upper() == "COMPLETE") & (tag(t, "collapsed") != "true")
        return t[ok & t["metrics.value"].notna()]

    def best(self, n: int = 5) -> pd.DataFrame:
        usable = self.usable()  # ties keep the runs' (stable) order
        order = usable.sort_values(
            "metrics.value", ascending=self.direction == "minimize", kind="stable"
        )
        return order[: max(n, 0)]

    @property
    def importances(self) -> dict[str, float]:
        pre = "metrics.importance."
        imp = {
            k.removeprefix(pre): float(v)
            for k, v in self.parent.items()
            if k.startswith(pre) and not pd.isna(v)
        }
        return dict(sorted(imp.items(), key=lambda kv: (-kv[1], kv[0])))


def sweeps(runs: pd.DataFrame) -> list[SweepView]:
    """Sweep parents (stage=sweep, no trial number) with their trials (mlflow.parentRunId)."""
    if runs.empty:
        return []
    sw = stage_runs(runs, "sweep")
    parents = sw[tag(sw, "trial_number") == ""]
    views = []
    for _, parent in parents.iterrows():
        trials = sw[tag(sw, "mlflow.parentRunId") == parent["run_id"]]
        pcols = [c for c in trials.columns if c.startswith("params.") and trials[c].notna().any()]
        swept = [c for c in pcols if not c.startswith("params.config.") and c != "params.trial"]
        direction = str(parent.get("params.sweep.direction") or "maximize")
        views.append(SweepView(parent, trials, swept, direction))
    return views


def compare_runs(run_ids: Sequence[str], runs: pd.DataFrame) -> pd.DataFrame:
    """Params and metrics that differ between the chosen runs, side by side: columns kind, key,
    then one column per run (its name and short id); equal values are left out."""
    known = set(runs["run_id"]) if "run_id" in runs else set()
    missing = [r for r in run_ids if r not in known]
    if missing:  # a mistyped id, or a run the --filter left out
        raise ConfigError(
            f"invalid --compare {' '.join(run_ids)}: {', '.join(missing)} not among the report's "
            f"{len(runs)} runs (its experiment and --filter)"
        )
    chosen = runs.set_index("run_id").reindex(list(run_ids))
    names = [f"{n} ({r[:8]})" for r, n in zip(run_ids, tag(chosen, "mlflow.runName"), strict=True)]
    rows = []
    for col in chosen.columns:
        if not col.startswith(("params.", "metrics.")):
            continue
        vals = chosen[col]
        if vals.isna().all():
            continue
        cells = [fmt(v) if not pd.isna(v) else "—" for v in vals]
        if len(set(cells)) > 1:
            kind, key = col.split(".", 1)
            rows.append(
                {"kind": kind.removesuffix("s"), "key": key, **dict(zip(names, cells, strict=True))}
            )
    return pd.DataFrame(rows, columns=["kind", "key", *names])

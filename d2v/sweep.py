"""Optuna studies over EMA tau, mask rate and top-K (and, switched on, target sublayer / norm).

The study lives in an RDB storage: an SQLite file by default, PostgreSQL when workers on many
machines share it. All `n_trials` trials are enqueued up front and workers only pop queued ones,
so however many workers on however many machines, exactly `n_trials` trials run; a re-run resumes
the queue and never counts a trial twice. A worker that dies leaves a trial RUNNING; storage
heartbeats fail it after the grace period, and it counts as finished (FAIL).
"""

from __future__ import annotations

import contextlib
import json
import logging
import shlex
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from d2v.atomic import write_json
from d2v.config import Modality, Params, SweepConfig, to_dict
from d2v.data.errors import DataError
from d2v.distributed import init_distributed
from d2v.failures import about
from d2v.objective import check_space, run_trial
from d2v.params_io import fingerprint
from d2v.targets import resolve_top_k
from d2v.tracking import Tracker, flatten

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///data/sweep.db"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def study_fingerprint(sweep: SweepConfig, params: Params, modality: Modality) -> str:
    """A hash of what shapes the trials (kept as the study's user attr `fingerprint`)."""
    return fingerprint(sweep, params.model, getattr(params.pretrain, modality.value), params.seed)


def study_name(sweep: SweepConfig, params: Params, modality: Modality) -> str:
    """Readable name (the sweep's, the method, the model size) with the fingerprint's head as a
    suffix, so a changed config starts a new study: e.g. `vision-v2-micro-1a2b3c4d`."""
    method = getattr(params.pretrain, modality.value).method.value
    short = study_fingerprint(sweep, params, modality)[:8]
    return f"{sweep.study_name}-{method}-{params.model.name}-{short}"


@contextlib.contextmanager
def next_queued_trial(study: optuna.Study) -> Iterator[optuna.Trial | None]:
    """Claim the next queued (WAITING) trial and keep its heartbeat going for the block; None
    when the queue is empty. The one place that uses Optuna internals, and why: `Study.ask` (and
    `Study.optimize`, built on it) *creates* a trial when it finds the queue empty, so workers
    racing for the last queued trials would run more than `n_trials`. `_pop_waiting_trial_id`,
    what `ask` calls first, only claims an existing trial (an atomic WAITING -> RUNNING in the
    storage), and the heartbeat thread is the one `optimize` runs around each trial, which lets
    `fail_stale_trials` fail a dead worker's trial. Both date from Optuna 3; checked on 5.0, and
    pinned below 6 in pyproject.toml."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    study._thread_local.cached_all_trials = None  # as `ask` does: see the other workers' trials
    trial_id = study._pop_waiting_trial_id()
    if trial_id is None:
        yield None
        return
    with get_heartbeat_thread(trial_id, study._storage):
        yield optuna.Trial(study, trial_id)


def open_study(sweep: SweepConfig, name: str, storage: str) -> optuna.Study:
    with about(f"Optuna storage {storage}"):
        rdb = optuna.storages.RDBStorage(
            storage, heartbeat_interval=sweep.heartbeat_s, grace_period=sweep.grace_s
        )
    if sweep.sampler == "grid":
        grid = {n: list(d.choices or []) for n, d in sweep.space.items() if d.enabled}
        sampler: optuna.samplers.BaseSampler = optuna.samplers.GridSampler(grid, seed=sweep.seed)
    elif sweep.sampler == "random":
        sampler = optuna.samplers.RandomSampler(seed=sweep.seed)
    else:
        sampler = optuna.samplers.TPESampler(seed=sweep.seed, n_startup_trials=2)
    pruner = {
        "median": lambda: optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        "hyperband": lambda: optuna.pruners.HyperbandPruner(),
        "successive_halving": lambda: optuna.pruners.SuccessiveHalvingPruner(),
        "none": lambda: optuna.pruners.NopPruner(),
    }[sweep.pruner]()
    return optuna.create_study(
        study_name=name,
        storage=rdb,
        sampler=sampler,
        pruner=pruner,
        direction=sweep.direction,
        load_if_exists=True,
    )


def baseline_values(params: Params, sweep: SweepConfig, modality: Modality) -> dict[str, Any]:
    """The run's own defaults in the study's param space: trial 0 scores them at the same budget."""
    flat = flatten(to_dict(params))
    out: dict[str, Any] = {}
    for name, dim in sweep.space.items():
        if not dim.enabled:
            continue
        value = flat[dim.param]
        if value is None and dim.param.endswith("targets.top_k"):
            method = getattr(params.pretrain, modality.value).method
            value = resolve_top_k(None, modality, params.model.depth, method)
        if dim.scale == "one_minus_log":
            out[f"{name}_gap"] = 1.0 - value
        else:
            out[name] = value
    return out


def enqueue(study: optuna.Study, n_trials: int, baseline: dict[str, Any]) -> None:
    """Queue trials until the study holds n_trials (the first, in a new study, the baseline)."""
    have = len(study.get_trials(deepcopy=False))
    if have == 0:
        study.enqueue_trial(baseline, user_attrs={"baseline": True})
        have = 1
    for _ in range(n_trials - have):
        study.enqueue_trial({})


def run_worker(
    params: Params,
    modality: Modality,
    prepared_dir: Path,
    storage: str,
    name: str,
    parent_run_id: str | None,
    stage: str = "sweep",
) -> int:
    """Pop queued trials until none is left; returns how many this worker ran. `stage` tags the
    MLflow child runs (sweep, or ablate for the ablation grids)."""
    sweep = params.sweep[modality.value]
    study = open_study(sweep, name, storage)
    dist_info = init_distributed()
    tracker = Tracker(params.tracking)
    ran = 0
    while True:
        with warnings.catch_warnings():  # fail_stale_trials is marked experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        with next_queued_trial(study) as trial:  # never creates a trial: the queue is the budget
            if trial is None:
                return ran
            ran += 1
            _run_one(
                trial,
                study,
                modality,
                params,
                prepared_dir,
                dist_info,
                tracker,
                parent_run_id,
                stage,
            )


def _run_one(
    trial: optuna.Trial,
    study: optuna.Study,
    modality: Modality,
    params: Params,
    prepared_dir: Path,
    dist_info: Any,
    tracker: Tracker,
    parent_run_id: str | None,
    stage: str,
) -> None:
    tags = {
        "stage": stage,
        "modality": modality.value,
        "study": study.study_name,
        "trial_number": trial.number,
        "baseline": trial.user_attrs.get("baseline", False),
    }
    status, state = "FINISHED", TrialState.COMPLETE
    with tracker.run(
        f"{stage}/{modality.value}/trial{trial.number}", tags=tags, parent_run_id=parent_run_id
    ) as run_id:
        trial.set_user_attr("mlflow_run_id", run_id)
        try:
            value = run_trial(trial, modality, params, prepared_dir, dist_info, tracker)
            study.tell(trial, value)
            tracker.log_metrics({"value": value})
        except optuna.TrialPruned as e:
            state, status = TrialState.PRUNED, "KILLED"
            study.tell(trial, state=state)
            log.info("trial %d pruned: %s", trial.number, e)
        except Exception as e:  # a failing trial is recorded and the study goes on
            state, status = TrialState.FAIL, "FAILED"
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:2000])
            study.tell(trial, state=state)
            tracker.set_tags({"error": f"{type(e).__name__}: {e}"[:5000]})
            log.warning("trial %d failed: %s: %s", trial.number, type(e).__name__, e)
        collapsed = bool(trial.user_attrs.get("collapsed"))
        tracker.set_tags({"state": state.name, "collapsed": str(collapsed).lower()})
    if run_id:
        tracker.set_terminated(run_id, status)


def make_storage_dir(storage: str) -> None:
    """A SQLite study file's folder exists before Optuna opens it."""
    if storage.startswith("sqlite:///"):
        Path(storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)


def run_workers(
    params: Params,
    modality: Modality,
    prepared_dir: Path,
    storage: str,
    name: str,
    parent_run_id: str | None,
    workers: int,
    params_path: Path,
    stage: str = "sweep",
) -> None:
    """Run the study's queued trials here (one worker) or in `workers` processes of
    `d2v <stage> <modality> --worker`, which share the storage."""
    if workers == 1:
        run_worker(params, modality, prepared_dir, storage, name, parent_run_id, stage)
        return
    argv = [sys.executable, "-m", "d2v.cli", stage, modality.value, "--worker"]
    argv += ["--storage", storage, "--params", str(params_path)]
    codes = [p.wait() for p in [subprocess.Popen(argv) for _ in range(workers)]]
    if any(codes):
        log.warning("worker exit codes %s", codes)


def run_sweep(
    params: Params,
    modality: Modality,
    prepared_dir: Path,
    out_json: Path,
    storage: str | None = None,
    workers: int = 1,
    params_path: Path = Path("params.yaml"),
) -> dict:
    """Create or resume the study, run `workers` worker processes, write the summary."""
    sweep = params.sweep[modality.value]
    check_space(params, sweep, f"sweep.{modality.value}")  # before any trial
    storage = storage or sweep.storage or DEFAULT_STORAGE
    make_storage_dir(storage)
    name = study_name(sweep, params, modality)
    study = open_study(sweep, name, storage)
    enqueue(study, sweep.n_trials, baseline_values(params, sweep, modality))
    study.set_user_attr("fingerprint", study_fingerprint(sweep, params, modality))
    tracker = Tracker(params.tracking)
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent is None:
        with tracker.run(
            f"sweep/{modality.value}",
            params={"sweep": sweep},
            tags={
                "stage": "sweep",
                "modality": modality.value,
                "study": name,
                "storage_kind": storage.split(":")[0].split("+")[0],
                "sampler": sweep.sampler,
                "pruner": sweep.pruner,
            },
        ) as parent:
            study.set_user_attr("mlflow_parent_run_id", parent)
    log.info("study %s in %s: %d trials, %d worker(s)", name, storage, sweep.n_trials, workers)
    run_workers(params, modality, prepared_dir, storage, name, parent, workers, params_path)
    study = optuna.load_study(study_name=name, storage=storage)
    refuse_unfinished(study, sweep)
    summary = summarize(study, sweep, modality)
    summary.update(storage_kind=storage.split(":")[0].split("+")[0], study_name=name)
    with tracker.run("", run_id=parent):
        tracker.log_metrics({f"trials_{k.lower()}": v for k, v in summary["states"].items()})
        if summary["best"]:
            tracker.log_metrics({"best_value": summary["best"]["value"]})
        tracker.log_metrics({f"importance.{k}": v for k, v in summary["importances"].items()})
        tracker.log_text(json.dumps(summary, indent=2, default=str), "sweep.json")
    write_json(out_json, summary)
    return summary


def refuse_unfinished(study: optuna.Study, sweep: SweepConfig) -> None:
    """A summary is written only for a study whose trials all finished: a trial still RUNNING
    (a live worker elsewhere, or a dead one within the heartbeat grace period) or WAITING is not
    a result yet."""
    open_trials = [
        t.number
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.RUNNING, TrialState.WAITING)
    ]
    if open_trials:
        raise DataError(
            f"study {study.study_name}: trials {open_trials} not finished (a worker still runs, or "
            f"died under grace_s={sweep.grace_s} s ago); re-run the sweep to resume them"
        )


def summarize(study: optuna.Study, sweep: SweepConfig, modality: Modality) -> dict:
    trials = study.get_trials(deepcopy=False)
    states = {
        s.name: sum(t.state == s for t in trials)
        for s in (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
    }
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    best = None
    if done:
        b = study.best_trial
        overrides = b.user_attrs.get("overrides", {})
        cmd = "dvc exp run " + " ".join(
            f"-S {shlex.quote(f'{k}={v}')}" for k, v in overrides.items()
        )
        best = {"value": b.value, "number": b.number, "params": overrides, "command": cmd}
    baseline = next((t for t in trials if t.user_attrs.get("baseline")), None)
    try:
        importances = dict(optuna.importance.get_param_importances(study)) if len(done) > 1 else {}
    except (RuntimeError, ValueError) as e:  # e.g. every complete trial has the same params
        log.info("no parameter importances: %s", e)
        importances = {}
    return {
        "modality": modality.value,
        "objective": f"linear probe {sweep.metric or 'score'} on {sweep.task}",
        "direction": sweep.direction,
        "n_trials": sweep.n_trials,
        "states": states,
        "best": best,
        "baseline": None
        if baseline is None
        else {"number": baseline.number, "state": baseline.state.name, "value": baseline.value},
        "importances": importances,
        "trials_wall_s": sum((t.duration.total_seconds() for t in trials if t.duration), 0.0),
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "value": t.value,
                "params": t.user_attrs.get("overrides", {}),
                "collapsed": bool(t.user_attrs.get("collapsed", False)),
                "error": t.user_attrs.get("error"),
                "duration_s": t.duration.total_seconds() if t.duration else None,
            }
            for t in trials
        ],
    }

"""`d2v ablate <modality>`: the ablation grid as an Optuna study on the sweep's machinery (the
same storage, workers, heartbeat, MLflow parent and child runs, short pretraining plus linear
probe per trial), with every cell enqueued up front so the study holds exactly the cells the
yaml implies; a re-run enqueues only the missing ones and runs what is left."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import optuna

from d2v.ablation.aggregate import axis_stats
from d2v.ablation.grid import SEED, axis_values, cells, defaults, grid_points, param_paths
from d2v.ablation.grid import study_config as grid_study_config
from d2v.atomic import write_json
from d2v.config import Modality, Params
from d2v.objective import trial_params
from d2v.sweep import (
    FINISHED,
    make_storage_dir,
    open_study,
    refuse_unfinished,
    run_workers,
    study_name,
)
from d2v.tracking import Tracker

log = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///data/ablate.db"


def ablation_params(params: Params, modality: Modality) -> Params:
    """The run's params with the ablation standing in as the modality's sweep, so the sweep's
    worker and objective run its cells unchanged."""
    sweep = grid_study_config(params.ablate[modality.value], params, modality)
    return dataclasses.replace(params, sweep={**params.sweep, modality.value: sweep})


def check_cells(params: Params, modality: Modality) -> None:
    """Compose and validate every cell's params (budget overrides included): a bad cell is
    refused here, naming its param, before any compute."""
    sweep = params.sweep[modality.value]
    paths = param_paths(params, modality)
    for cell in cells(params.ablate[modality.value], defaults(params, modality)):
        trial_params(params, sweep, {paths[a]: v for a, v in cell.items()})


def _key(point: dict[str, Any]) -> tuple:
    return tuple(sorted((k, str(v)) for k, v in point.items()))


def _point(t: optuna.trial.FrozenTrial) -> dict[str, Any]:
    return dict(t.system_attrs.get("fixed_params") or t.params)


def enqueue_cells(study: optuna.Study, points: list[dict[str, Any]]) -> int:
    """Queue the grid points the study does not hold yet; returns how many were added."""
    have = {_key(_point(t)) for t in study.get_trials(deepcopy=False)}
    todo = [p for p in points if _key(p) not in have]
    for p in todo:
        study.enqueue_trial(p)
    return len(todo)


def run_ablation(
    params: Params,
    modality: Modality,
    prepared_dir: Path,
    out_json: Path,
    storage: str | None = None,
    workers: int = 1,
    params_path: Path = Path("params.yaml"),
) -> dict:
    """Create or resume the grid study, run its cells with `workers` processes, write the
    summary (per axis value mean ± std over seeds, and every cell)."""
    cfg = params.ablate[modality.value]
    params = ablation_params(params, modality)
    check_cells(params, modality)
    sweep = params.sweep[modality.value]
    storage = storage or cfg.storage or DEFAULT_STORAGE
    make_storage_dir(storage)
    name = study_name(sweep, params, modality)
    study = open_study(sweep, name, storage)
    default = defaults(params, modality)
    added = enqueue_cells(study, grid_points(cfg, default))
    tracker = Tracker(params.tracking)
    parent = study.user_attrs.get("mlflow_parent_run_id")
    if parent is None:
        paths = param_paths(params, modality)
        with tracker.run(
            f"ablate/{modality.value}",
            params={
                "ablate": {
                    "design": cfg.design.value,
                    "direction": cfg.direction,
                    "objective": objective(cfg),
                    "default": default,
                    "param": {a: paths[a] for a in axis_values(cfg, default)},
                }
            },
            tags={"stage": "ablate", "modality": modality.value, "study": name},
        ) as parent:
            study.set_user_attr("mlflow_parent_run_id", parent)
    log.info("ablation %s in %s: %d cells (%d new)", name, storage, sweep.n_trials, added)
    run_workers(
        params, modality, prepared_dir, storage, name, parent, workers, params_path, "ablate"
    )
    study = optuna.load_study(study_name=name, storage=storage)
    refuse_unfinished(study, sweep)  # a cell still RUNNING: no summary claiming the grid is done
    summary = summarize(study, params, modality)
    summary.update(storage_kind=storage.split(":")[0].split("+")[0], study_name=name)
    with tracker.run("", run_id=parent):
        tracker.log_metrics({f"cells_{k.lower()}": v for k, v in summary["states"].items()})
        tracker.log_text(json.dumps(summary, indent=2, default=str), "ablate.json")
    write_json(out_json, summary)
    return summary


def objective(cfg: Any) -> str:
    return f"linear probe {cfg.metric or 'score'} on {cfg.task}"


def summarize(study: optuna.Study, params: Params, modality: Modality) -> dict:
    cfg = params.ablate[modality.value]
    default = defaults(params, modality)
    axes = axis_values(cfg, default)
    trials = study.get_trials(deepcopy=False)
    pending = (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)
    states = {s.name: sum(t.state == s for t in trials) for s in (*FINISHED, *pending)}
    rows = [
        {
            **_point(t),
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "collapsed": bool(t.user_attrs.get("collapsed", False)),
            "error": t.user_attrs.get("error"),
            "duration_s": t.duration.total_seconds() if t.duration else None,
        }
        for t in trials
    ]
    return {
        "modality": modality.value,
        "method": getattr(params.pretrain, modality.value).method.value,
        "design": cfg.design.value,
        "objective": objective(cfg),
        "direction": cfg.direction,
        "defaults": default,
        "axes": axes,
        "seeds": list(cfg.seeds),
        "n_cells": len(grid_points(cfg, default)),
        "states": states,
        "stats": axis_stats(rows, axes, default, cfg.design),
        "cells_wall_s": sum(r["duration_s"] or 0.0 for r in rows),
        "cells": sorted(rows, key=lambda r: (r[SEED], r["number"])),
    }

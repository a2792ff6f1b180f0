"""glue: the GLUE table from the per-task evaluations, with the GLUE average as the paper
computes it (eight tasks without WNLI, MNLI as the mean of matched and mismatched), pretrained vs
scratch, per seed and over seeds.

With the embedded stand-ins only four tasks exist: their average is written as
`glue_partial` with the task list, never as the paper's column.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from d2v.atomic import read_json, write_json
from d2v.config import INITS, Modality, Params
from d2v.data.errors import readable
from d2v.metrics import GLUE_AVERAGE_TASKS, glue_average, summarize
from d2v.tracking import Tracker

log = logging.getLogger(__name__)


def task_glue_scores(result: dict, init: str) -> list[float]:
    """Per seed, the single number the paper averages for this task (MNLI: mean of m / mm)."""
    per_seed = result["per_seed"][init]
    if "dev_mismatched_glue" in per_seed:
        return [
            (a + b) / 2
            for a, b in zip(per_seed["glue"], per_seed["dev_mismatched_glue"], strict=True)
        ]
    return list(per_seed["glue"])


def run_glue(params: Params, metrics_dir: Path, out_path: Path) -> dict:
    tasks = [t for t, cfg in params.finetune.items() if cfg.modality == Modality.text]
    sources = {t: (metrics_dir / f"{t}.json", f"rerun evaluate@{t}") for t in tasks}
    results = {t: read_json(*sources[t]) for t in tasks}
    counted = [t for t in GLUE_AVERAGE_TASKS if t in results]
    complete = len(counted) == len(GLUE_AVERAGE_TASKS)
    key = "glue" if complete else "glue_partial"
    out: dict = {
        "tasks": counted,
        "complete": complete,
        "seeds": params.seeds,
        "synthetic_tasks": [t for t, r in results.items() if r.get("synthetic")],
        "pretrain_collapsed": any(r.get("pretrain_collapsed") for r in results.values()),
    }
    for init in INITS:
        per_task = {}
        for t in counted:
            with readable(*sources[t]):  # from another version: its keys missing
                per_task[t] = task_glue_scores(results[t], init)
        per_seed = [
            glue_average({t: per_task[t][i] for t in counted}, require_all=complete)
            for i in range(len(params.seeds))
        ]
        s = summarize(per_seed)
        out[init] = {
            key: s["mean"],
            f"{key}_std": s["std"],
            **{t: summarize(v)["mean"] for t, v in per_task.items()},
        }
        out.setdefault("per_seed", {})[init] = per_seed
    tracker = Tracker(params.tracking)
    with tracker.run(
        "evaluate/glue",
        tags={"stage": "evaluate", "task": "glue", "modality": "text", "metric": key},
    ):
        tracker.log_metrics({f"{i}_{k}": v for i in INITS for k, v in out[i].items()})
    write_json(out_path, out)
    log.info(
        "%s over %s: pretrained %.2f, scratch %.2f",
        key,
        ", ".join(counted),
        out["pretrained"][key],
        out["scratch"][key],
    )
    return out


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v glue` (the stage glue)."""
    from d2v.params_io import read_params

    run_glue(read_params(args.params), Path("metrics/eval"), Path("metrics/glue.json"))

"""evaluate@<task>: the task's official metric on held-out data, for the fine-tuned models and for
a linear probe on the frozen encoder, pretrained vs scratch, per seed and summarized.

metrics/eval/<task>.json follows the contract in DESIGN.md:
{"pretrained": {metric: mean, ...}, "scratch": {...}, "seeds": [...], ...}
with `probe_<metric>` for the linear probe and `<metric>_std` for the spread over seeds.
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

import torch

from d2v.atomic import write_json
from d2v.config import Params
from d2v.downstream import DownstreamTask, build_model
from d2v.finetune import chance_scores, predict, probe_scores
from d2v.interop.mapping import load_matching
from d2v.metrics import summarize
from d2v.params_io import read_params
from d2v.pool import run_all, worker_count
from d2v.runs.finetune import (
    INITS,
    device_and_bf16,
    init_encoder,
    load_task,
    pretrain_summary,
    task_paths,
    task_tags,
)
from d2v.saved import load_saved
from d2v.tracking import Tracker

log = logging.getLogger(__name__)


def held_out_scores(
    task: DownstreamTask, model: torch.nn.Module, batch_size: int, device: torch.device
) -> dict[str, float]:
    """The task's metrics on its held-out split, and on each extra set as `<set>_<metric>`."""
    scores = task.score(*predict(model, task.eval_pass(batch_size), device))
    for name, eval_pass in task.extra_evals.items():
        extra = task.score(*predict(model, eval_pass(batch_size), device))
        scores.update({f"{name}_{k}": v for k, v in extra.items()})
    return scores


def evaluate_one(
    params: Params,
    task_name: str,
    prepared_dir: Path,
    pretrained: Path,
    finetuned: Path,
    init: str,
    seed: int,
) -> dict[str, float]:
    """One (init, seed): the fine-tuned model's held-out scores and, as `probe_<metric>`, a linear
    probe's on the frozen initial encoder. Runs in a worker process."""
    cfg = params.finetune[task_name]
    task = load_task(params, task_name, prepared_dir)
    device, _ = device_and_bf16()
    model = build_model(task, task.build_encoder(), cfg)
    path = finetuned / init / f"seed{seed}.pt"
    load_matching(model, load_saved(path), str(path))  # another task's file: its misfit named
    scores = held_out_scores(task, model, cfg.eval_batch_size, device)
    encoder = init_encoder(task, init, seed, pretrained)
    probe = probe_scores(encoder, task, cfg, cfg.probe.label_fraction, seed, device)
    scores.update({f"probe_{k}": v for k, v in probe.items()})
    log.info(
        "%s %s seed %d: %s",
        task_name,
        init,
        seed,
        ", ".join(f"{k} {v:.2f}" for k, v in scores.items()),
    )
    return scores


def run_evaluate(
    params: Params,
    task_name: str,
    prepared_dir: Path,
    pretrained: Path,
    finetuned: Path,
    metrics_path: Path,
) -> dict:
    cfg = params.finetune[task_name]
    task = load_task(params, task_name, prepared_dir)
    tracker = Tracker(params.tracking)
    pre = pretrain_summary(pretrained)
    base_tags = task_tags("evaluate", params, task, pretrained)
    per_seed: dict[str, dict[str, list[float]]] = {i: {} for i in INITS}
    runs = [(init, seed) for init in INITS for seed in params.seeds]
    with tracker.run(
        f"evaluate/{task_name}",
        tags=base_tags,
        params={"finetune": {task_name: cfg}, "seeds": params.seeds},
    ):
        # the encoder every pretrained run loads: one that does not load stops the stage here
        init_encoder(task, "pretrained", params.seeds[0], pretrained)
        jobs = [(params, task_name, prepared_dir, pretrained, finetuned, *run) for run in runs]
        results = run_all(evaluate_one, jobs, worker_count(params.downstream_workers, len(jobs)))
        for (init, seed), scores in zip(runs, results, strict=True):
            for k, v in scores.items():
                per_seed[init].setdefault(k, []).append(v)
            with tracker.run(
                f"evaluate/{task_name}/{init}/seed{seed}",
                nested=True,
                tags={**base_tags, "init": init, "seed": seed},
            ):
                tracker.log_metrics(scores)
        result: dict = {
            "task": task_name,
            "modality": task.modality.value,
            "dataset": task.dataset,
            "metric": task.metric,
            "seeds": params.seeds,
            "label_fraction": cfg.label_fraction,
            "probe_label_fraction": cfg.probe.label_fraction,
            "pretrain_collapsed": bool(pre.get("collapsed", False)),
            # the pretrained arm's weights: pretrain@<m>, or an HF checkpoint (`d2v import`)
            "pretrained_from": pre.get("imported_from", "pretrain"),
            "extra_evals": sorted(task.extra_evals),
            # a predictor that ignores its input scores this: the floor of "not learning"
            "chance": chance_scores(task, cfg.eval_batch_size),
            **task.notes,
            "per_seed": per_seed,
        }
        for init in INITS:
            result[init] = {}
            for k, values in per_seed[init].items():
                s = summarize(values)
                result[init][k] = s["mean"]
                result[init][f"{k}_std"] = s["std"]
        tracker.log_metrics({f"{init}_{k}": v for init in INITS for k, v in result[init].items()})
        tracker.log_metrics({f"chance_{k}": v for k, v in result["chance"].items()})
        register_best_encoder(tracker, params, task, pre, result)
        write_json(metrics_path, result)
    return result


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v evaluate <task>` (the stage evaluate@<task>)."""
    params = read_params(args.params)  # validated before any compute
    prepared, pretrained, finetuned = task_paths(params, args.task)
    out = Path("metrics/eval") / f"{args.task}.json"
    run_evaluate(params, args.task, prepared, pretrained, finetuned, out)


def register_best_encoder(
    tracker: Tracker, params: Params, task: DownstreamTask, pre: dict, result: dict
) -> str | None:
    """The pretrained encoder becomes the registered `d2v-<modality>-encoder` (alias `best`)
    when its fine-tuned score on the task its modality's sweep optimizes beats the registered
    best's on the same task, metric, model size and data; returns the new version."""
    sweep = params.sweep.get(task.modality.value)
    if sweep is None or sweep.task != task.name:
        return None
    metric = sweep.metric or task.metric
    score = result["pretrained"].get(metric)
    if score is None or not math.isfinite(score) or pre.get("collapsed"):
        return None
    context = {
        "task": task.name,
        "metric": metric,
        "model": params.model.name,
        "data_source": getattr(params.data, task.modality.value).source,
    }
    return tracker.register_if_best(
        pre.get("mlflow_model_uri") or "",
        f"d2v-{task.modality.value}-encoder",
        score,
        sweep.direction == "maximize",
        context,
        {"pretrain_run_id": pre.get("mlflow_run_id"), "method": pre.get("method")},
    )

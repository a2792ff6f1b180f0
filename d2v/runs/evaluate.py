"""evaluate@<task>: the task's official metric on held-out data, for the fine-tuned models and for
a linear probe on the frozen encoder, pretrained vs scratch, per seed and summarized.

metrics/eval/<task>.json follows the contract in DESIGN.md:
{"pretrained": {metric: mean, ...}, "scratch": {...}, "seeds": [...], ...}
with `probe_<metric>` for the linear probe and `<metric>_std` for the spread over seeds.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from d2v.atomic import write_json
from d2v.config import Params
from d2v.downstream import DownstreamTask, build_model
from d2v.finetune import predict, probe_scores
from d2v.metrics import summarize
from d2v.modalities import downstream_task
from d2v.runs.finetune import INITS, init_encoder, pretrain_summary, task_tags
from d2v.tracking import Tracker

log = logging.getLogger(__name__)


def probe_score(
    task: DownstreamTask,
    params: Params,
    task_name: str,
    init: str,
    seed: int,
    pretrained: Path,
    device: torch.device,
) -> dict[str, float]:
    cfg = params.finetune[task_name]
    encoder = init_encoder(task, init, seed, pretrained)
    return probe_scores(encoder, task, cfg, cfg.probe.label_fraction, seed, device)


def held_out_scores(
    task: DownstreamTask, model: torch.nn.Module, batch_size: int, device: torch.device
) -> dict[str, float]:
    """The task's metrics on its held-out split, and on each extra set as `<set>_<metric>`."""
    scores = task.score(*predict(model, task.eval_pass(batch_size), device))
    for name, eval_pass in task.extra_evals.items():
        extra = task.score(*predict(model, eval_pass(batch_size), device))
        scores.update({f"{name}_{k}": v for k, v in extra.items()})
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
    task = downstream_task(params, task_name, prepared_dir)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tracker = Tracker(params.tracking)
    pre = pretrain_summary(pretrained)
    base_tags = task_tags("evaluate", params, task, pretrained)
    per_seed: dict[str, dict[str, list[float]]] = {i: {} for i in INITS}
    with tracker.run(
        f"evaluate/{task_name}",
        tags=base_tags,
        params={"finetune": {task_name: cfg}, "seeds": params.seeds},
    ):
        for init in INITS:
            for seed in params.seeds:
                model = build_model(task, task.build_encoder(), cfg)
                model.load_state_dict(
                    torch.load(
                        finetuned / init / f"seed{seed}.pt", map_location="cpu", weights_only=True
                    )
                )
                scores = held_out_scores(task, model, cfg.eval_batch_size, device)
                probe = probe_score(task, params, task_name, init, seed, pretrained, device)
                scores.update({f"probe_{k}": v for k, v in probe.items()})
                for k, v in scores.items():
                    per_seed[init].setdefault(k, []).append(v)
                with tracker.run(
                    f"evaluate/{task_name}/{init}/seed{seed}",
                    nested=True,
                    tags={**base_tags, "init": init, "seed": seed},
                ):
                    tracker.log_metrics(scores)
                log.info(
                    "%s %s seed %d: %s",
                    task_name,
                    init,
                    seed,
                    ", ".join(f"{k} {v:.2f}" for k, v in scores.items()),
                )
        result: dict = {
            "task": task_name,
            "modality": task.modality.value,
            "dataset": task.dataset,
            "metric": task.metric,
            "seeds": params.seeds,
            "label_fraction": cfg.label_fraction,
            "probe_label_fraction": cfg.probe.label_fraction,
            "pretrain_collapsed": bool(pre.get("collapsed", False)),
            "extra_evals": sorted(task.extra_evals),
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
        write_json(metrics_path, result)
    return result

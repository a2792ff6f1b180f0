"""finetune@<task>: full fine-tuning of encoder + head on a label subset, from the pretrained
encoder and from random init ("scratch") with the same budget, for every seed. The (init, seed)
runs are independent: `downstream_workers` processes share them (`d2v.pool`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from d2v.atomic import atomic_path, read_json, write_json
from d2v.config import INITS, ConfigError, Params, TaskConfig
from d2v.config.base import suggest
from d2v.distributed import bf16_supported
from d2v.downstream import DownstreamTask, build_model
from d2v.encoder import Encoder, fold_parametrizations
from d2v.finetune import finetune, labeled_subset
from d2v.interop.mapping import load_matching
from d2v.modalities import downstream_task
from d2v.params_io import fingerprint, read_params
from d2v.pool import run_all, worker_count
from d2v.saved import load_saved
from d2v.tracking import Tracker

log = logging.getLogger(__name__)


def init_encoder(task: DownstreamTask, init: str, seed: int, pretrained: Path) -> Encoder:
    """The encoder a run starts from: seeded random init, then the pretrained weights if asked."""
    torch.manual_seed(seed)
    encoder = task.build_encoder()
    if init == "pretrained":
        state = load_saved(pretrained / "encoder.pt", weights_only=False, keys=("encoder",))
        # pretrain@ wrote it with these params, or `d2v import` from an HF checkpoint: a model
        # param that differs shows as the first tensor that does not fit, by name
        load_matching(encoder, state["encoder"], str(pretrained / "encoder.pt"))
    return encoder


def task_tags(stage: str, params: Params, task: DownstreamTask, pretrained: Path) -> dict:
    """The MLflow tags a downstream stage's runs share (the report groups by them)."""
    return {
        "stage": stage,
        "task": task.name,
        "modality": task.modality.value,
        "dataset": task.dataset,
        "data_source": getattr(params.data, task.modality.value).source,
        "model": params.model.name,
        "metric": task.metric,
        "pretrain_run_id": pretrain_summary(pretrained).get("mlflow_run_id"),
    }


def pretrain_summary(pretrained: Path) -> dict:
    return read_json(pretrained / "summary.json", "re-run the stage that writes it")


def load_task(params: Params, task_name: str, prepared_dir: Path) -> DownstreamTask:
    """The task's data views, loaded once per process (a worker runs several seeds of a task)."""
    key = fingerprint(params, task_name, str(prepared_dir))
    if key not in _TASKS:
        _TASKS[key] = downstream_task(params, task_name, prepared_dir)
    return _TASKS[key]


_TASKS: dict[str, DownstreamTask] = {}


def device_and_bf16() -> tuple[torch.device, bool]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return device, bf16_supported(device)


def finetune_one(
    params: Params,
    task_name: str,
    prepared_dir: Path,
    pretrained: Path,
    out_dir: Path,
    init: str,
    seed: int,
) -> dict:
    """One (init, seed) fine-tuning run, saved as out_dir/<init>/seed<seed>.pt; returns its
    summary and the (step, metrics) history for the tracker. Runs in a worker process."""
    cfg = params.finetune[task_name]
    task = load_task(params, task_name, prepared_dir)
    device, bf16 = device_and_bf16()
    subset = labeled_subset(task, cfg.label_fraction, seed)
    model = build_model(task, init_encoder(task, init, seed, pretrained), cfg)
    batches = task.train_pass(subset, cfg.optim.batch_size, seed)
    history: list[tuple[int, dict[str, float]]] = []
    losses = finetune(
        model,
        lambda: batches,
        cfg.optim,
        device,
        lambda metrics, step: history.append((step, dict(metrics))),
        bf16,
        desc=f"finetune {init} seed {seed}",
        freeze_steps=cfg.freeze_steps,
        # a scratch encoder has no pretrained layers to keep: full rate
        layer_decay=cfg.layer_decay if init == "pretrained" else 1.0,
    )
    (out_dir / init).mkdir(exist_ok=True)
    torch.save(model.state_dict(), out_dir / init / f"seed{seed}.pt")
    log.info(
        "finetuned %s seed %d on %d labels: train loss %.4f", init, seed, len(subset), losses[-1]
    )
    return {
        "final_train_loss": losses[-1],
        "labeled_examples": int(len(subset)),
        "history": history,
    }


def finetuned_model(
    params: Params, task: DownstreamTask, out_dir: Path, init: str, seed: int
) -> torch.nn.Module:
    """The fine-tuned encoder + head that `finetune_one` saved, rebuilt for MLflow."""
    model = build_model(task, task.build_encoder(), params.finetune[task.name])
    path = out_dir / init / f"seed{seed}.pt"
    load_matching(model, load_saved(path), str(path))
    return fold_parametrizations(model.eval())


def run_finetune(
    params: Params,
    task_name: str,
    prepared_dir: Path,
    pretrained: Path,
    out_dir: Path,
    curves_path: Path | None = None,
) -> dict:
    """Fine-tune every (init, seed) of `task_name` into out_dir; with `curves_path`, also write
    the training curves there (`curves`, for `dvc plots`)."""
    cfg: TaskConfig = params.finetune[task_name]
    task = load_task(params, task_name, prepared_dir)
    tracker = Tracker(params.tracking)
    base_tags = task_tags("finetune", params, task, pretrained)
    summary: dict = {"task": task_name, "label_fraction": cfg.label_fraction, "runs": {}}
    runs = [(init, seed) for init in INITS for seed in params.seeds]
    histories: dict[tuple[str, int], list[tuple[int, dict[str, float]]]] = {}
    with (
        tracker.run(
            f"finetune/{task_name}",
            tags=base_tags,
            params={"finetune": {task_name: cfg}, "seeds": params.seeds},
        ),
        atomic_path(out_dir) as tmp,
    ):
        tmp.mkdir()
        # the encoder every pretrained run loads: one that does not load stops the stage here
        init_encoder(task, "pretrained", params.seeds[0], pretrained)
        jobs = [(params, task_name, prepared_dir, pretrained, tmp, *run) for run in runs]
        results = run_all(finetune_one, jobs, worker_count(params.downstream_workers, len(jobs)))
        for (init, seed), result in zip(runs, results, strict=True):
            history = histories[init, seed] = result.pop("history")
            with tracker.run(
                f"finetune/{task_name}/{init}/seed{seed}",
                nested=True,
                tags={
                    **base_tags,
                    "init": init,
                    "seed": seed,
                    "labeled_examples": result["labeled_examples"],
                },
            ):
                tracker.log_history(history)
                if tracker.active:
                    tracker.log_model(finetuned_model(params, task, tmp, init, seed), "model")
            summary["runs"][f"{init}/seed{seed}"] = result
        write_json(tmp / "summary.json", summary)
    if curves_path is not None:
        write_json(curves_path, curves(histories))
    return summary


def curves(
    histories: dict[tuple[str, int], list[tuple[int, dict[str, float]]]], metric: str = "train_loss"
) -> list[dict[str, float]]:
    """One row per logged step: `metric` per init, the mean over seeds (what `dvc plots` draws:
    x step, y pretrained and scratch)."""
    by_step: dict[int, dict[str, list[float]]] = {}
    for (init, _seed), history in sorted(histories.items()):
        for step, metrics in history:
            by_step.setdefault(step, {}).setdefault(init, []).append(metrics[metric])
    return [
        {"step": step, **{init: sum(v) / len(v) for init, v in sorted(row.items())}}
        for step, row in sorted(by_step.items())
    ]


def task_paths(params: Params, task: str) -> tuple[Path, Path, Path]:
    """The prepared data, pretrained model and fine-tuned models of `task` (a params.finetune
    key; an unknown one is refused naming the allowed ones)."""
    if task not in params.finetune:
        raise ConfigError(f"unknown task {task!r}: {suggest(task, params.finetune)}")
    m = params.finetune[task].modality.value
    return (
        Path("data/prepared") / m,
        Path("models") / m / "pretrained",
        Path("models") / task / "finetuned",
    )


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v finetune <task>` (the stage finetune@<task>)."""
    params = read_params(args.params)  # validated before any compute
    curves_path = Path("metrics/finetune") / f"{args.task}.json"
    run_finetune(params, args.task, *task_paths(params, args.task), curves_path)

"""A sweep trial: its params built with Hydra's compose API plus the sampled overrides, a short
pretraining run, and the cheap downstream proxy reported at intervals for pruning."""

from __future__ import annotations

import math
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml

from d2v.collapse import CollapseError
from d2v.config import (
    ConfigError,
    Modality,
    ModelConfig,
    Params,
    SweepConfig,
    SweepDim,
    load_params,
    to_dict,
)
from d2v.config.base import refused
from d2v.distributed import DistInfo
from d2v.downstream import DownstreamTask, selection_view
from d2v.encoder import Encoder
from d2v.finetune import probe_scores
from d2v.modalities import downstream_task, pretrain_spec
from d2v.params_io import compose
from d2v.tracking import Tracker
from d2v.train import pretrain


def suggest(trial: optuna.Trial, name: str, dim: SweepDim, model: ModelConfig) -> Any:
    """The param value for this trial; tau-like params are sampled as log(1 - tau)."""
    if dim.scale == "categorical":
        return trial.suggest_categorical(name, list(dim.choices or []))
    if dim.scale == "int":
        high = int(dim.high) if dim.high is not None else model.depth
        return trial.suggest_int(name, int(dim.low), high)
    if dim.scale == "one_minus_log":
        gap = trial.suggest_float(f"{name}_gap", dim.low, dim.high, log=True)
        return 1.0 - gap
    return trial.suggest_float(name, dim.low, dim.high, log=dim.scale == "log")


def trial_overrides(trial: optuna.Trial, sweep: SweepConfig, model: ModelConfig) -> dict[str, Any]:
    """{param path: sampled value} over the enabled dimensions."""
    return {d.param: suggest(trial, n, d, model) for n, d in sweep.space.items() if d.enabled}


def trial_params(base: Params, sweep: SweepConfig, values: dict[str, Any]) -> Params:
    """The run's own params with the sweep's budget overrides and the sampled values on top,
    composed by Hydra's compose API (base written as a one-file config dir); validated."""
    overrides = [*sweep.overrides, *(f"{k}={_hydra(v)}" for k, v in values.items())]
    with tempfile.TemporaryDirectory() as conf:
        (Path(conf) / "config.yaml").write_text(yaml.safe_dump(to_dict(base)))
        return load_params(compose(conf, overrides))


def dim_ends(dim: SweepDim, model: ModelConfig) -> list[Any]:
    """The param values a dimension reaches at its ends (every choice of a categorical one)."""
    if dim.scale == "categorical":
        return list(dim.choices or [])
    if dim.scale == "int":
        return [int(dim.low), int(dim.high) if dim.high is not None else model.depth]
    if dim.scale == "one_minus_log":
        return [1.0 - dim.low, 1.0 - dim.high]
    return [dim.low, dim.high]


def check_space(base: Params, sweep: SweepConfig, where: str) -> None:
    """Compose and validate trial params at the ends of every enabled dimension (each choice of a
    categorical one), the trial budget included: a range reaching outside its param's allowed
    values is refused here, naming the dimension, before any trial runs (an ablation checks its
    cells the same way)."""
    model = trial_params(base, sweep, {}).model
    ends = {n: dim_ends(d, model) for n, d in sweep.space.items() if d.enabled}
    for i in range(max(map(len, ends.values()), default=0)):
        point = {n: v[min(i, len(v) - 1)] for n, v in ends.items()}
        try:
            trial_params(base, sweep, {sweep.space[n].param: v for n, v in point.items()})
        except ConfigError as e:
            param, allowed = refused(e)
            for n, value in point.items():
                dim = sweep.space[n]
                if dim.param == param:
                    shown = dim.choices if dim.scale == "categorical" else [dim.low, dim.high]
                    raise ConfigError(
                        f"invalid param {where}.space.{n} = {shown}: allowed values within "
                        f"{dim.param}'s {allowed} ({value!r} is refused)"
                    ) from None
            raise ConfigError(f"invalid param {where}.space: at its ends {point}, {e}") from None


def _hydra(value: Any) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def probe_value(
    encoder: Encoder,
    task: DownstreamTask,
    params: Params,
    fraction: float,
    seed: int,
    device: torch.device,
    metric: str | None = None,
) -> float:
    """`metric` (default: the task's official one) under a linear probe of the encoder; the
    encoder goes back to train mode."""
    scores = probe_scores(encoder, task, params.finetune[task.name], fraction, seed, device)
    encoder.train()
    if (metric or task.metric) not in scores:
        raise ConfigError(f"invalid probe metric {metric!r}: allowed one of {sorted(scores)}")
    return scores[metric or task.metric]


def sweep_probe(
    params: Params, modality: Modality, prepared_dir: Path, device: torch.device
) -> tuple[DownstreamTask, Callable[[Encoder], float]]:
    """The sweep's proxy for `modality`: its task and the encoder -> score function (the
    sweep's linear probe, label fraction, seed and metric), scored on the task's dev split
    where it has one (`selection_view`)."""
    sweep = params.sweep[modality.value]
    task = selection_view(downstream_task(params, sweep.task, prepared_dir))

    def probe(encoder: Encoder) -> float:
        return probe_value(
            encoder, task, params, sweep.probe_label_fraction, sweep.seed, device, sweep.metric
        )

    return task, probe


def objective_name(sweep: SweepConfig, metric: str) -> str:
    """The objective as Optuna's dashboard and plots name it, e.g. `imagenet probe top1`."""
    return f"{sweep.task} probe {sweep.metric or metric}"


def name_objective(study: optuna.Study, name: str) -> None:
    """Name the study's objective once (Optuna marks `set_metric_names` experimental)."""
    if study.metric_names != [name]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([name])


def run_trial(
    trial: optuna.Trial,
    modality: Modality,
    base: Params,
    prepared_dir: Path,
    dist_info: DistInfo,
    tracker: Tracker,
) -> float:
    """Pretrain with this trial's config and return its proxy score.

    Raises optuna.TrialPruned when the pruner stops it or the run collapses (tagged collapsed).
    """
    sweep = base.sweep[modality.value]
    values = trial_overrides(trial, sweep, trial_params(base, sweep, {}).model)
    params = trial_params(base, sweep, values)
    trial.set_user_attr("overrides", {k: _hydra(v) for k, v in values.items()})
    spec = pretrain_spec(params, modality, prepared_dir)
    task, probe = sweep_probe(params, modality, prepared_dir, dist_info.device)
    name_objective(trial.study, objective_name(sweep, task.metric))
    steps = spec.optim.steps
    tracker.log_params({"trial": trial.number, **values, "config": to_dict(params.pretrain)})

    def report(step: int, row: dict[str, float], student: Any) -> None:
        if step % sweep.report_every or step >= steps:
            return
        value = probe(student.encoder)
        trial.report(value, step)
        tracker.log_metrics({"proxy": value}, step=step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step} with proxy {value:.3f}")

    ckpt = Path(tempfile.mkdtemp(prefix=f"d2v-trial{trial.number}-"))
    try:
        model, _, _ = pretrain(
            spec, params.deepspeed, dist_info, params.seed, ckpt, tracker.log_metrics, report
        )
    except CollapseError as e:
        trial.set_user_attr("collapsed", True)
        raise optuna.TrialPruned(str(e)) from e
    finally:
        shutil.rmtree(ckpt, ignore_errors=True)
    value = probe(model.encoder)
    if not math.isfinite(value):
        raise RuntimeError(f"proxy value is {value}")
    trial.report(value, steps)
    tracker.log_metrics({"proxy": value}, step=steps)
    return value

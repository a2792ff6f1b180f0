"""pretrain@<modality>: data2vec pretraining through DeepSpeed; writes the pretrained encoder.

With `deepspeed.num_procs > 1` and no launcher around it, the stage relaunches itself under
torchrun with that many ranks. Checkpoints live outside the DVC output, keyed by a fingerprint of
everything that shapes the run, so a killed run resumes and a changed config starts afresh.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import yaml

from d2v.atomic import atomic_path, write_json
from d2v.collapse import CollapseError
from d2v.config import Modality, Params, to_dict
from d2v.distributed import DistInfo, free_port, init_distributed
from d2v.encoder import EncoderFeatures, fold_parametrizations
from d2v.modalities import pretrain_spec
from d2v.params_io import fingerprint, read_params
from d2v.teacher import EMATeacher
from d2v.tracking import Tracker
from d2v.train import PretrainResult, PretrainSpec, Student, full_state_dict, pretrain

log = logging.getLogger(__name__)


def relaunch_under_torchrun(num_procs: int, argv: list[str]) -> int:
    """Run `python argv...` as `num_procs` ranks on this machine; returns the exit code."""
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={num_procs}",
        f"--master_port={free_port()}",
        *argv,
    ]
    log.info("relaunching: %s", " ".join(cmd))
    return subprocess.call(cmd)


def run_config(params: Params, modality: Modality) -> dict:
    """The params that shape a pretraining run (saved beside the model and in MLflow)."""
    return {
        "seed": params.seed,
        "model": params.model,
        "deepspeed": params.deepspeed,
        "data": {modality.value: getattr(params.data, modality.value)},
        "pretrain": {modality.value: getattr(params.pretrain, modality.value)},
    }


# the summary's fields that make the stage's DVC metrics file
METRICS = (
    "final_loss",
    "final_target_std",
    "final_pred_std",
    "final_target_r2",
    "final_copy_r2",
    "final_interp_r2",
    "final_target_autocorr",
    "samples_per_s",
    "wall_s",
    "steps",
)


def run_pretrain(
    params: Params,
    modality: Modality,
    prepared_dir: Path,
    out_dir: Path,
    metrics_path: Path,
    ckpt_root: Path = Path("checkpoints"),
) -> dict | None:
    info = init_distributed()
    spec = pretrain_spec(params, modality, prepared_dir)
    config = to_dict(run_config(params, modality))
    ckpt_dir = (
        ckpt_root / modality.value / fingerprint(config, (prepared_dir / "meta.json").read_text())
    )
    tracker = Tracker(params.tracking, active=info.is_main)
    tags = run_tags(params, modality, spec, info.world_size)
    with tracker.run(f"pretrain/{modality.value}", tags=tags, params=config) as run_id:
        model, teacher, result = train_or_mark_collapsed(params, spec, info, ckpt_dir, tracker)
        encoder_state = full_state_dict(model.encoder)
        summary = run_summary(modality, spec, result, info.world_size, run_id)
        if info.is_main:
            features, example = encoder_model(spec, encoder_state, params.seed)
            summary["mlflow_model_uri"] = tracker.log_model(features, "encoder", example)
            write_outputs(out_dir, metrics_path, config, encoder_state, teacher, result, summary)
            tracker.log_artifact(out_dir / "config.yaml")
            tracker.log_artifact(out_dir / "summary.json")
            tracker.log_metrics(
                {"wall_s": result.wall_s, "mean_samples_per_s": result.samples_per_s}
            )
            shutil.rmtree(ckpt_dir, ignore_errors=True)  # the output now holds the model
            log.info(
                "pretrained %s in %.0f s: loss %.4f, target std %.3f",
                modality.value,
                result.wall_s,
                result.final_loss,
                result.final_target_std,
            )
    if dist.get_world_size() > 1:
        dist.barrier()
    return summary if info.is_main else None


def run_tags(params: Params, modality: Modality, spec: PretrainSpec, world_size: int) -> dict:
    return {
        "stage": "pretrain",
        "modality": modality.value,
        "model": params.model.name,
        "data_source": getattr(params.data, modality.value).source,
        "seed": params.seed,
        "world_size": world_size,
        "zero_stage": params.deepspeed.zero_stage,
        "top_k": spec.top_k,
        "method": spec.method.value,
    }


def train_or_mark_collapsed(
    params: Params, spec: PretrainSpec, info: DistInfo, ckpt_dir: Path, tracker: Tracker
) -> tuple[Student, EMATeacher, PretrainResult]:
    """`train.pretrain`, its run tagged `collapsed` true or false (a collapse re-raises)."""
    try:
        out = pretrain(spec, params.deepspeed, info, params.seed, ckpt_dir, tracker.log_metrics)
    except CollapseError as e:
        tracker.set_tags({"collapsed": "true"})
        log.error("%s: the run is marked collapsed in MLflow and no model is written", e)
        raise
    tracker.set_tags({"collapsed": "false"})
    return out


def run_summary(
    modality: Modality,
    spec: PretrainSpec,
    result: PretrainResult,
    world_size: int,
    run_id: str | None,
) -> dict:
    return {
        "modality": modality.value,
        "steps": result.steps,
        "final_loss": result.final_loss,
        "final_target_std": result.final_target_std,
        "final_pred_std": result.final_pred_std,
        "final_target_r2": result.final_target_r2,
        "final_copy_r2": result.final_copy_r2,
        "final_interp_r2": result.final_interp_r2,
        "final_target_autocorr": result.final_target_autocorr,
        "samples_per_s": result.samples_per_s,
        "wall_s": result.wall_s,
        "resumed_from": result.resumed_from,
        "world_size": world_size,
        "top_k": spec.top_k,
        "method": spec.method.value,
        "collapsed": False,
        "mlflow_run_id": run_id,
    }


def write_outputs(
    out_dir: Path,
    metrics_path: Path,
    config: dict,
    encoder_state: dict[str, torch.Tensor],
    teacher: EMATeacher,
    result: PretrainResult,
    summary: dict,
) -> None:
    """The pretrained folder (encoder.pt, config.yaml, summary.json, history.json), written
    atomically, and the stage's metrics file."""
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        torch.save(
            {"encoder": encoder_state, "teacher": teacher.state_dict(), "config": config},
            tmp / "encoder.pt",
        )
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        write_json(tmp / "summary.json", summary)
        write_json(tmp / "history.json", result.history)
    write_json(metrics_path, {k: summary[k] for k in METRICS})


def encoder_model(
    spec: PretrainSpec, state: dict[str, torch.Tensor], seed: int
) -> tuple[EncoderFeatures, torch.Tensor]:
    """The pretrained encoder as the feature extractor logged to MLflow (rebuilt from the full
    state, so ZeRO-3 partitions never reach it; the teacher and optimizer stay out), with two
    pretraining samples as the example that gives its signature."""
    encoder = spec.build_encoder()
    encoder.load_state_dict(state)
    batch = spec.data.batch(spec.data.indices(2, 0, seed), slice(0, 2))
    example = batch if isinstance(batch, torch.Tensor) else batch[0]  # audio: (wave, lengths)
    return fold_parametrizations(EncoderFeatures(encoder).eval()), example


def needs_relaunch(params: Params) -> bool:
    return params.deepspeed.num_procs > 1 and "RANK" not in os.environ


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v pretrain <modality>` (the stage pretrain@<modality>); with `deepspeed.num_procs > 1`
    and no launcher around it, the same command again under torchrun."""
    params = read_params(args.params)  # validated before any compute
    if needs_relaunch(params):
        code = relaunch_under_torchrun(params.deepspeed.num_procs, ["-m", "d2v.cli", *argv])
        if code:
            raise SystemExit(code)
        return
    m = args.modality.value
    run_pretrain(
        params,
        args.modality,
        Path("data/prepared") / m,
        Path("models") / m / "pretrained",
        Path("metrics/pretrain") / f"{m}.json",
    )

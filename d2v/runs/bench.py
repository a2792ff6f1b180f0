"""bench@<modality>: data2vec (v1) against data2vec 2.0 (v2) on this machine, in one process.

Writes `metrics/bench/<modality>.json` and one MLflow run (stage=bench):
- `peak_gflops`: the machine's fp32 / bf16 matmul peak, the best of a measurement at the start
  and one after each method's timed steps (a peak taken while the cores were shared would
  put MFU above 1);
- per method, at `bench.model` size and the method's batch: `samples_per_s`, `flops_per_step`
  (torch.utils.flop_counter, forward + backward of student and teacher), `mfu` (achieved /
  fp32 peak), `ema_share` (the EMA update's share of the step), the same under bf16 autocast
  against the bf16 peak, and `hf_speedup` (HF transformers' Data2Vec peer time / d2v's, forward
  + backward: v1 the whole encoder on the batch, v2 the Transformer stack on the visible tokens);
- per method, at the pipeline's `model` and budgets: the linear-probe score against pretraining
  wall time, and for v2 `time_to_v1_probe_s` (the wall time at which it first reaches v1's
  final probe score) and `probe_at_v1_wall_s` (its score when v1 finished).
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
from pathlib import Path
from typing import Any

import torch

from d2v.atomic import write_json
from d2v.bench import Curve, Throughput, matmul_peak, mfu, step_throughput, time_to_accuracy
from d2v.config import DeepSpeedConfig, Method, Modality, Params, Precision
from d2v.distributed import DistInfo, init_distributed
from d2v.modalities import pretrain_spec
from d2v.objective import sweep_probe
from d2v.tracking import Tracker, hardware
from d2v.train import PretrainSpec, Student

log = logging.getLogger(__name__)


def with_method(params: Params, modality: Modality, method: Method, model: Any = None) -> Params:
    """A copy of `params` pretraining `modality` with `method` (and `model` size if given)."""
    p = copy.deepcopy(params)
    getattr(p.pretrain, modality.value).method = method
    if model is not None:
        p.model = copy.deepcopy(model)
    return p.validate()


DTYPES = {Precision.fp32: torch.float32, Precision.bf16: torch.bfloat16}


def precisions(params: Params) -> tuple[Precision, ...]:
    return (Precision.fp32, Precision.bf16) if params.bench.bf16 else (Precision.fp32,)


def measure_peak(params: Params, precision: Precision, info: DistInfo, peaks: dict) -> None:
    """Measure `precision`'s matmul peak and keep the best of it and any earlier one: a peak
    taken while something else had the cores would put MFU above 1."""
    cfg = params.bench
    got = matmul_peak(DTYPES[precision], cfg.matmul_size, cfg.matmul_repeats, info.device)
    peaks[precision.value] = max(peaks.get(precision.value, 0.0), got)


def throughput_entry(
    spec: PretrainSpec, params: Params, info: DistInfo, peaks: dict[str, float]
) -> dict[str, Any]:
    """Steps/s, FLOPs and EMA share per precision, the peak measured again right after the
    steps (MFU comes later, against the best peak of the whole bench: `add_mfu`)."""
    cfg = params.bench
    entry: dict[str, Any] = {"batch_size": spec.optim.batch_size}
    for precision in precisions(params):
        ds = DeepSpeedConfig(params.deepspeed.zero_stage, precision, 1)
        t: Throughput = step_throughput(
            spec, ds, info, params.seed, cfg.warmup_steps, cfg.timed_steps
        )
        measure_peak(params, precision, info, peaks)
        fields = {
            "samples_per_s": t.samples_per_s,
            "step_s": t.step_s,
            "flops_per_step": t.flops_per_step,
            "ema_share": t.ema_share,
        }
        if precision == Precision.fp32:
            entry.update(fields)
        else:
            entry["bf16"] = fields
        log.info(
            "%s %s: %.1f samples/s, %.3g FLOP/step, EMA %.2f%%",
            spec.method.value,
            precision.value,
            t.samples_per_s,
            t.flops_per_step,
            100 * t.ema_share,
        )
    return entry


def add_mfu(methods: dict[str, dict], peaks: dict[str, float]) -> None:
    """Every method's MFU, per precision, against the best peak the bench measured."""
    for name, entry in methods.items():
        for precision, fields in (("fp32", entry), ("bf16", entry.get("bf16"))):
            if fields is not None:
                fields["mfu"] = mfu(fields["flops_per_step"], fields["step_s"], peaks[precision])
                log.info("%s %s: MFU %.1f%%", name, precision, 100 * fields["mfu"])


def hf_entry(
    spec: PretrainSpec, params: Params, modality: Modality, info: DistInfo
) -> dict[str, Any]:
    """d2v's encoder against HF's peer of the same shape, forward + backward, interleaved."""
    from d2v.bench_hf import hf_forward, hf_model, race

    torch.manual_seed(params.seed)
    encoder = spec.build_encoder().to(info.device).train()
    idx = spec.data.indices(spec.optim.batch_size, 0, params.seed)
    source = spec.data.batch(idx)
    mask = spec.data.mask(idx, torch.Generator().manual_seed(params.seed))
    model = params.model
    if spec.method == Method.v2:  # the Transformer stack on the visible tokens of every copy
        R, K = mask.ids_keep.shape
        x = torch.randn(R, K, model.dim)
        hf = hf_model(modality, params, model, K).train()
        result = race(
            lambda: encoder.backbone(x).last,
            lambda: hf.encoder(x).last_hidden_state,
            2,
            params.bench.hf_repeats,
        )
        shape = {"rows": R, "tokens": K}
    else:  # the whole encoder on the batch
        seq = source.shape[1] if modality == Modality.text else 0
        hf = hf_model(modality, params, model, seq).train()
        result = race(
            lambda: encoder(source).last,
            lambda: hf_forward(modality, hf, source),
            2,
            params.bench.hf_repeats,
        )
        shape = {"rows": spec.optim.batch_size}
    log.info(
        "%s encoder vs HF: %.1f ms vs %.1f ms (x%.2f)",
        spec.method.value,
        1e3 * result.ours_s,
        1e3 * result.hf_s,
        result.speedup,
    )
    return {
        "hf_speedup": result.speedup,
        "hf_ms": 1e3 * result.hf_s,
        "ours_ms": 1e3 * result.ours_s,
        "hf_shape": shape,
    }


def accuracy_curve(
    params: Params, modality: Modality, prepared: Path, info: DistInfo
) -> tuple[Curve, str, bool]:
    """The method's pretraining at the pipeline's budget, scored by the sweep's linear probe."""
    spec = pretrain_spec(params, modality, prepared)
    sweep = params.sweep[modality.value]
    task, probe_encoder = sweep_probe(params, modality, prepared, info.device)

    def probe(student: Student) -> float:
        return probe_encoder(student.encoder)

    every = max(1, math.ceil(spec.optim.steps / params.bench.probes))
    ds = DeepSpeedConfig(params.deepspeed.zero_stage, params.deepspeed.precision, 1)
    curve = time_to_accuracy(spec, ds, info, params.seed, probe, every)
    return curve, sweep.metric or task.metric, sweep.direction == "maximize"


def run_bench(params: Params, modality: Modality, prepared: Path, out_json: Path) -> dict:
    info = init_distributed()
    cfg = params.bench
    tracker = Tracker(params.tracking, active=info.is_main)
    size = cfg.model or params.model
    peaks: dict[str, float] = {}
    for precision in precisions(params):
        measure_peak(params, precision, info, peaks)
    log.info("matmul peak: %s GFLOP/s", {k: round(v, 1) for k, v in peaks.items()})
    result: dict[str, Any] = {
        "modality": modality.value,
        "hardware": hardware(),
        "threads": torch.get_num_threads(),
        "model": size.name,
        "peak_gflops": peaks,
        "methods": {},
    }
    tags = {"stage": "bench", "modality": modality.value, "model": size.name}
    with tracker.run(f"bench/{modality.value}", tags=tags, params={"bench": cfg}) as run_id:
        for method in cfg.methods:
            p = with_method(params, modality, method, size)
            spec = pretrain_spec(p, modality, prepared)
            entry = throughput_entry(spec, p, info, peaks)
            if cfg.hf:
                entry.update(hf_entry(spec, p, modality, info))
            result["methods"][method.value] = entry
        add_mfu(result["methods"], peaks)
        if cfg.time_to_accuracy:
            curves = {}
            for method in cfg.methods:
                p = with_method(params, modality, method)
                curve, metric, maximize = accuracy_curve(p, modality, prepared, info)
                curves[method.value] = curve
                result["methods"][method.value].update(
                    probe_metric=metric,
                    probe_curve={
                        "steps": curve.steps,
                        "wall_s": curve.wall_s,
                        "scores": curve.scores,
                    },
                    final_probe=curve.final,
                    pretrain_wall_s=curve.wall_s[-1],
                )
            if {"v1", "v2"} <= set(curves):
                v1, v2 = curves["v1"], curves["v2"]
                result["methods"]["v2"].update(
                    time_to_v1_probe_s=v2.first_reach(v1.final, maximize),
                    probe_at_v1_wall_s=v2.at(v1.wall_s[-1]),
                    v1_final_probe=v1.final,
                    v1_wall_s=v1.wall_s[-1],
                )
        result["mlflow_run_id"] = run_id
        tracker.log_metrics(_flat_metrics(result))
        for name, entry in result["methods"].items():
            curve = entry.get("probe_curve")
            tracker.log_history(
                [
                    (step, {f"{name}.probe": score, f"{name}.probe_wall_s": wall})
                    for step, wall, score in zip(*curve.values(), strict=True)
                ]
                if curve
                else []
            )
    if info.is_main:
        write_json(out_json, result)
    return result


def _flat_metrics(result: dict[str, Any]) -> dict[str, float]:
    out = {f"peak_gflops.{k}": v for k, v in result["peak_gflops"].items()}
    for name, entry in result["methods"].items():
        for key, value in entry.items():
            if isinstance(value, dict):
                for k, v in value.items():
                    if isinstance(v, (int, float)):
                        out[f"{name}.{key}.{k}"] = v
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f"{name}.{key}"] = value
    return out


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v bench <modality>` (the stage bench@<modality>)."""
    from d2v.params_io import read_params

    params = read_params(args.params)  # validated before any compute
    m = args.modality.value
    run_bench(params, args.modality, Path("data/prepared") / m, Path("metrics/bench") / f"{m}.json")

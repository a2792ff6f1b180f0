"""data2vec pretraining through a DeepSpeed engine (ZeRO 0-3), one code path for CPU and GPU,
one rank or many. Fixed-order step: schedule, mask, forward, backward, step, EMA, log, checkpoint.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from d2v.checkpoint import load_checkpoint, save_checkpoint
from d2v.collapse import CollapseError, CollapseMonitor, NonFiniteLossError
from d2v.config import (
    CollapseConfig,
    DeepSpeedConfig,
    EmaConfig,
    LossConfig,
    Modality,
    OptimConfig,
    Precision,
    TargetConfig,
)
from d2v.distributed import DistInfo, bf16_supported
from d2v.encoder import Encoder
from d2v.masking import MaskInfo
from d2v.model import Data2Vec
from d2v.sampling import batch_indices, rank_slice, step_seed
from d2v.schedule import lr_at
from d2v.targets import resolve_top_k
from d2v.teacher import EMATeacher, tau_at
from d2v.tracking import Tracker

log = logging.getLogger(__name__)


class PretrainData(Protocol):
    """A modality's pretraining examples, addressed by index."""

    def __len__(self) -> int: ...

    def batch(self, indices: np.ndarray) -> Tensor:
        """The model input for these examples."""

    def mask(self, indices: np.ndarray, generator: torch.Generator) -> MaskInfo:
        """Student masks for a whole global batch (so any rank count sees the same masks)."""


@dataclass
class PretrainSpec:
    """Everything modality-specific that the loop needs."""

    build_encoder: Callable[[], Encoder]
    data: PretrainData
    top_k: int
    ema: EmaConfig
    targets: TargetConfig
    loss: LossConfig
    optim: OptimConfig
    collapse: CollapseConfig
    shared: Sequence[str] = ()
    checkpoint_every: int = 100
    log_every: int = 10

    @classmethod
    def from_config(
        cls,
        cfg: Any,  # a modality's pretraining config: Vision/Speech/TextPretrainConfig
        modality: Modality,
        depth: int,
        build_encoder: Callable[[], Encoder],
        data: PretrainData,
    ) -> PretrainSpec:
        """The loop's settings from a modality's pretraining config; K resolved for `depth`."""
        return cls(
            build_encoder=build_encoder,
            data=data,
            top_k=resolve_top_k(cfg.targets.top_k, modality, depth),
            ema=cfg.ema,
            targets=cfg.targets,
            loss=cfg.loss,
            optim=cfg.optim,
            collapse=cfg.collapse,
            shared=cfg.shared,
            checkpoint_every=cfg.checkpoint_every,
            log_every=cfg.log_every,
        )


@dataclass
class PretrainResult:
    steps: int
    final_loss: float
    final_target_std: float
    final_pred_std: float
    final_target_r2: float
    samples_per_s: float
    wall_s: float
    resumed_from: int
    history: list[dict[str, float]] = field(default_factory=list)


def deepspeed_config(ds: DeepSpeedConfig, optim: OptimConfig, world_size: int) -> dict[str, Any]:
    """Precision is handled with torch.autocast (params and EMA stay fp32), so no bf16 block."""
    return {
        "train_batch_size": optim.batch_size,
        "train_micro_batch_size_per_gpu": rank_slice(optim.batch_size, 0, world_size).stop,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": optim.grad_clip,
        "zero_optimization": {"stage": ds.zero_stage},
        "steps_per_print": 2**31 - 1,
    }


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms, positions and the mask embedding (1-D params)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim > 1 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def use_bf16(precision: Precision, device: torch.device) -> bool:
    if precision == Precision.auto:
        return bf16_supported(device)
    return precision == Precision.bf16


def _mean_over_ranks(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.get_world_size() > 1:
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t.tolist()


OnLog = Callable[[int, dict[str, float], Data2Vec], None]  # (step, logged row, student)


def pretrain(
    spec: PretrainSpec,
    ds: DeepSpeedConfig,
    dist_info: DistInfo,
    seed: int,
    ckpt_dir: Path,
    tracker: Tracker,
    on_log: OnLog | None = None,
) -> tuple[Data2Vec, EMATeacher, PretrainResult]:
    """Pretrain from scratch or from the latest checkpoint in `ckpt_dir`. `on_log` runs after
    each logged step (a sweep reports its proxy there, and may stop the run by raising)."""
    import deepspeed

    device = dist_info.device
    torch.manual_seed(seed)  # identical initial weights on every rank
    model = Data2Vec(spec.build_encoder(), spec.targets, spec.loss, spec.top_k).to(device)
    teacher = EMATeacher(model.encoder, spec.shared)
    optimizer = torch.optim.AdamW(
        param_groups(model, spec.optim.weight_decay),
        lr=spec.optim.lr,
        betas=(spec.optim.beta1, spec.optim.beta2),
    )
    engine, *_ = deepspeed.initialize(
        model=model,
        optimizer=optimizer,
        config=deepspeed_config(ds, spec.optim, dist_info.world_size),
    )
    start, state = load_checkpoint(engine, teacher, ckpt_dir)
    monitor = CollapseMonitor(spec.collapse, strikes=state.get("strikes", 0))
    bf16 = use_bf16(ds.precision, device)
    rows = rank_slice(spec.optim.batch_size, dist_info.rank, dist_info.world_size)
    steps = spec.optim.steps
    history: list[dict[str, float]] = []
    t0, t_log, n_log = time.perf_counter(), time.perf_counter(), 0
    last = {"loss": math.nan, "target_std": math.nan, "pred_std": math.nan, "target_r2": math.nan}
    bar = tqdm(
        range(start, steps),
        initial=start,
        total=steps,
        desc="pretrain",
        disable=not dist_info.is_main,
        mininterval=2.0,
    )
    for step in bar:
        # schedule
        lr = lr_at(step, spec.optim.lr, spec.optim.warmup_steps, steps, spec.optim.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        tau = tau_at(step, spec.ema.tau_start, spec.ema.tau_end, spec.ema.anneal_steps)
        # data and masks: pure functions of (seed, step), sliced to this rank
        torch.manual_seed(step_seed(seed, step) + dist_info.rank)  # dropout
        idx = batch_indices(len(spec.data), spec.optim.batch_size, step, seed)
        mask = spec.data.mask(idx, torch.Generator().manual_seed(step_seed(seed, step)))
        source = spec.data.batch(idx[rows]).to(device, non_blocking=True)
        mask = mask.select(rows).to(device)
        # forward, backward, step, EMA
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        with autocast:
            out = engine(source, mask, teacher)
        if not torch.isfinite(out.loss):
            raise NonFiniteLossError(f"loss is {out.loss.item()} at step {step}")
        engine.backward(out.loss)
        engine.step()
        teacher.update(engine.module.encoder, tau)
        n_log += rows.stop - rows.start
        # log
        done = step + 1
        if done % spec.log_every == 0 or done == steps:
            loss, t_std, p_std, r2 = _mean_over_ranks(
                [out.loss.item(), out.target_std.item(), out.pred_std.item(), out.target_r2.item()],
                device,
            )
            now = time.perf_counter()
            rate = n_log * dist_info.world_size / (now - t_log)
            t_log, n_log = now, 0
            last = {"loss": loss, "target_std": t_std, "pred_std": p_std, "target_r2": r2}
            row = {**last, "lr": lr, "tau": tau, "samples_per_s": rate}
            history.append({"step": done, **row})
            tracker.log_metrics(row, step=done)
            bar.set_postfix(loss=f"{loss:.4f}", tstd=f"{t_std:.3f}", r2=f"{r2:.2f}")
            if monitor.check(done, t_std):
                tracker.set_tags({"collapsed": "true"})
                raise CollapseError(
                    f"collapsed at step {done}: target std {t_std:.4g} under "
                    f"{spec.collapse.min_target_std} for {monitor.strikes} checks"
                )
            if on_log is not None:
                on_log(done, row, engine.module)
        if done % spec.checkpoint_every == 0 and done < steps:
            save_checkpoint(engine, teacher, ckpt_dir, done, {"strikes": monitor.strikes})
    wall = time.perf_counter() - t0
    done_now = steps - start
    result = PretrainResult(
        steps=steps,
        final_loss=last["loss"],
        final_target_std=last["target_std"],
        final_pred_std=last["pred_std"],
        final_target_r2=last["target_r2"],
        samples_per_s=done_now * spec.optim.batch_size / wall if done_now else 0.0,
        wall_s=wall,
        resumed_from=start,
        history=history,
    )
    tracker.set_tags({"collapsed": "false"})
    return engine.module, teacher, result


def full_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """A complete CPU state dict, gathering ZeRO-3 partitions when there are any."""
    params = list(module.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

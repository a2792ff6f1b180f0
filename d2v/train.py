"""data2vec pretraining through a DeepSpeed engine (ZeRO 0-3), one code path for CPU and GPU,
one rank or many. Fixed-order step: schedule, mask, forward, backward, step, EMA, log, checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from d2v.callbacks import LogMetrics
from d2v.checkpoint import load_checkpoint, save_checkpoint
from d2v.collapse import CollapseMonitor, NonFiniteLossError
from d2v.config import (
    CollapseConfig,
    DeepSpeedConfig,
    EmaConfig,
    LossConfig,
    Method,
    Modality,
    OptimConfig,
    Precision,
    TargetConfig,
)
from d2v.config.deepspeed_json import check_with_deepspeed, merge_user_config
from d2v.config.pretrain import PretrainCommon
from d2v.distributed import DistInfo, bf16_supported
from d2v.encoder import Encoder
from d2v.learnability import learnability
from d2v.logbook import Logbook
from d2v.masking import MaskInfo
from d2v.model import Data2Vec, Data2VecOutput
from d2v.model_v2 import Data2Vec2
from d2v.sampling import rank_slice, step_seed
from d2v.schedule import lr_at
from d2v.targets import make_targets, resolve_top_k
from d2v.teacher import EMATeacher, tau_at

log = logging.getLogger(__name__)


class PretrainData(Protocol):
    """A modality's pretraining examples, addressed by index."""

    def __len__(self) -> int: ...

    def indices(self, batch_size: int, step: int, seed: int) -> np.ndarray:
        """The global batch at `step`: a pure function of (seed, step)."""

    def batch(self, indices: np.ndarray, rows: slice) -> Tensor:
        """The model input for `indices[rows]`, this rank's share of the global batch."""

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
    method: Method = Method.v1
    build_decoder: Callable[[], nn.Module] | None = None  # data2vec 2.0's decoder
    grid: tuple[int, int] | None = None  # images: the patch grid (learnability runs in 2-D)
    span: int = 1  # tokens a mask span covers (the lag of the targets' autocorrelation)
    shared: Sequence[str] = ()
    checkpoint_every: int = 100
    log_every: int = 10

    @classmethod
    def from_config(
        cls,
        cfg: PretrainCommon,  # a modality's pretraining config: Vision/Speech/TextPretrainConfig
        modality: Modality,
        depth: int,
        build_encoder: Callable[[], Encoder],
        data: PretrainData,
        build_decoder: Callable[[], nn.Module] | None = None,
        grid: tuple[int, int] | None = None,
        span: int = 1,
    ) -> PretrainSpec:
        """The loop's settings from the active method's block; K resolved for `depth`; the EMA
        schedule fitted to the run (`fit_schedules`)."""
        m = cfg.active
        ema = fit_schedules(cfg, modality)
        return cls(
            build_encoder=build_encoder,
            data=data,
            top_k=resolve_top_k(m.targets.top_k, modality, depth, cfg.method),
            ema=ema,
            targets=m.targets,
            loss=m.loss,
            optim=m.optim,
            collapse=cfg.collapse,
            method=cfg.method,
            build_decoder=build_decoder if cfg.method == Method.v2 else None,
            grid=grid,
            span=span,
            shared=cfg.shared,
            checkpoint_every=cfg.checkpoint_every,
            log_every=cfg.log_every,
        )

    def build_model(self) -> Data2Vec | Data2Vec2:
        """The student of the method, freshly initialized."""
        encoder = self.build_encoder()
        if self.method == Method.v2:
            if self.build_decoder is None:
                raise ValueError("data2vec 2.0 needs a decoder")
            return Data2Vec2(encoder, self.build_decoder(), self.targets, self.loss, self.top_k)
        return Data2Vec(encoder, self.targets, self.loss, self.top_k)


def fit_schedules(cfg: PretrainCommon, modality: Modality) -> EmaConfig:
    """The active method's EMA schedule, fitted to its run and said in the log: an anneal longer
    than the run (tau would stop short of tau_end) is shortened to the run. A collapse check
    that would start after the run is said too."""
    m, p = cfg.active, f"pretrain.{modality.value}"
    ema = m.ema.within(m.optim.steps)
    if ema != m.ema:
        log.warning(
            "%s.%s.ema.anneal_steps=%d is longer than the run (%s.%s.optim.steps=%d): tau would "
            "end at %.6g, short of tau_end=%g; annealing over the run's %d steps instead",
            *(p, cfg.method.value, m.ema.anneal_steps, p, cfg.method.value, m.optim.steps),
            tau_at(m.optim.steps, m.ema.tau_start, m.ema.tau_end, m.ema.anneal_steps),
            m.ema.tau_end,
            ema.anneal_steps,
        )
    if cfg.collapse.check_after >= m.optim.steps:
        log.info(
            "%s.collapse.check_after=%d >= the run's %d steps: no collapse check",
            *(p, cfg.collapse.check_after, m.optim.steps),
        )
    return ema


@dataclass
class PretrainResult:
    steps: int
    final_loss: float
    final_target_std: float
    final_pred_std: float
    final_target_r2: float
    final_copy_r2: float  # what copying the nearest visible target reaches (learnability)
    final_interp_r2: float  # what interpolating across the masked span reaches
    final_target_autocorr: float  # the targets' correlation one span apart
    samples_per_s: float
    wall_s: float
    resumed_from: int
    history: list[dict[str, float]] = field(default_factory=list)


def deepspeed_config(ds: DeepSpeedConfig, optim: OptimConfig, world_size: int) -> dict[str, Any]:
    """Precision is handled with torch.autocast (params and EMA stay fp32), so no bf16 block.
    A user's `deepspeed.config_file` is merged in, agreeing with the keys built here."""
    ours = {
        "train_batch_size": optim.batch_size,
        "train_micro_batch_size_per_gpu": rank_slice(optim.batch_size, 0, world_size).stop,
        "gradient_accumulation_steps": 1,
        "gradient_clipping": optim.grad_clip,
        "zero_optimization": {"stage": ds.zero_stage},
        "steps_per_print": 2**31 - 1,
    }
    if ds.config_file is None:
        return ours
    merged = merge_user_config(ours, ds.config_file)
    check_with_deepspeed(merged, ds.config_file)
    return merged


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


Student = Data2Vec | Data2Vec2
OnLog = Callable[[int, dict[str, float], Student], None]  # (step, logged row, student)


@dataclass
class StepOutput:
    out: Data2VecOutput
    lr: float
    tau: float
    ema_s: float  # wall time of the EMA update


class Trainer:
    """The student in a DeepSpeed engine, its EMA teacher, and the fixed-order train step:
    schedule, mask, forward, backward, step, EMA. Data, masks and dropout are pure functions of
    (seed, step), so a step is the same on any number of ranks and after a resume."""

    def __init__(self, spec: PretrainSpec, ds: DeepSpeedConfig, dist_info: DistInfo, seed: int):
        import deepspeed

        self.spec, self.dist_info, self.seed = spec, dist_info, seed
        self.device = dist_info.device
        torch.manual_seed(seed)  # identical initial weights on every rank
        model = spec.build_model().to(self.device)
        self.teacher = EMATeacher(model.encoder, spec.shared)
        self.optimizer = torch.optim.AdamW(
            param_groups(model, spec.optim.weight_decay),
            lr=spec.optim.lr,
            betas=(spec.optim.beta1, spec.optim.beta2),
        )
        self.engine, *_ = deepspeed.initialize(
            model=model,
            optimizer=self.optimizer,
            config=deepspeed_config(ds, spec.optim, dist_info.world_size),
        )
        self.bf16 = use_bf16(ds.precision, self.device)
        self.rows = rank_slice(spec.optim.batch_size, dist_info.rank, dist_info.world_size)

    @property
    def student(self) -> Student:
        return self.engine.module

    def batch(self, step: int) -> tuple[Any, MaskInfo]:
        """This rank's input and masks at `step`."""
        spec, seed = self.spec, self.seed
        idx = spec.data.indices(spec.optim.batch_size, step, seed)
        mask = spec.data.mask(idx, torch.Generator().manual_seed(step_seed(seed, step)))
        source = spec.data.batch(idx, self.rows).to(self.device, non_blocking=True)
        return source, mask.select(self.rows).to(self.device)

    def forward(self, source: Any, mask: MaskInfo) -> Data2VecOutput:
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        )
        with autocast:
            return self.engine(source, mask, self.teacher)

    def step(self, step: int) -> StepOutput:
        spec, optim = self.spec, self.spec.optim
        # schedule
        lr = lr_at(step, optim.lr, optim.warmup_steps, optim.steps, optim.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        tau = tau_at(step, spec.ema.tau_start, spec.ema.tau_end, spec.ema.anneal_steps)
        # data and masks, then dropout, from (seed, step)
        source, mask = self.batch(step)
        torch.manual_seed(step_seed(self.seed, step) + self.dist_info.rank)
        # forward, backward, step, EMA
        out = self.forward(source, mask)
        if not torch.isfinite(out.loss):
            raise NonFiniteLossError(f"loss is {out.loss.item()} at step {step}")
        self.engine.backward(out.loss)
        self.engine.step()
        t_ema = time.perf_counter()
        self.teacher.update(self.student.encoder, tau)
        return StepOutput(out, lr, tau, time.perf_counter() - t_ema)

    @torch.no_grad()
    def learnability(self, step: int) -> dict[str, float]:
        """What trivial predictors reach on the teacher's targets at this step's masked
        positions (`d2v.learnability`): one more teacher forward, at logged steps only."""
        source, mask = self.batch(step)
        cfg = self.spec.targets
        autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16 else nullcontext()
        )
        with autocast:
            out = self.teacher.model(source, None, collect=cfg.sublayer)
        y = make_targets(out.layers, cfg, self.spec.top_k, out.padding_mask)
        return learnability(
            y, mask.mask, mask.copies, self.spec.span, self.spec.grid, out.padding_mask
        )


def _result(spec: PretrainSpec, start: int, wall: float, book: Logbook) -> PretrainResult:
    last, steps = book.last, spec.optim.steps
    done_now = steps - start
    return PretrainResult(
        steps=steps,
        final_loss=last["loss"],
        final_target_std=last["target_std"],
        final_pred_std=last["pred_std"],
        final_target_r2=last["target_r2"],
        final_copy_r2=last["copy_r2"],
        final_interp_r2=last["interp_r2"],
        final_target_autocorr=last["target_autocorr"],
        samples_per_s=done_now * spec.optim.batch_size / wall if done_now else 0.0,
        wall_s=wall,
        resumed_from=start,
        history=book.history,
    )


def pretrain(
    spec: PretrainSpec,
    ds: DeepSpeedConfig,
    dist_info: DistInfo,
    seed: int,
    ckpt_dir: Path,
    log_metrics: LogMetrics | None = None,
    on_log: OnLog | None = None,
) -> tuple[Student, EMATeacher, PretrainResult]:
    """Pretrain from scratch or from the latest checkpoint in `ckpt_dir`. Each logged step's row
    goes to `log_metrics` (the stage's tracker), then `on_log` runs (a sweep reports its proxy
    there, and may stop the run by raising). A collapse raises CollapseError: the caller marks
    its run."""
    trainer = Trainer(spec, ds, dist_info, seed)
    engine, teacher = trainer.engine, trainer.teacher
    start, state = load_checkpoint(engine, teacher, ckpt_dir)
    monitor = CollapseMonitor(spec.collapse, strikes=state.get("strikes", 0))
    book = Logbook(trainer, monitor, log_metrics, on_log)
    steps = spec.optim.steps
    t0 = time.perf_counter()
    bar = tqdm(
        range(start, steps),
        initial=start,
        total=steps,
        desc="pretrain",
        disable=not dist_info.is_main,
        mininterval=2.0,
    )
    for step in bar:
        s = trainer.step(step)
        book.count(trainer.rows)
        done = step + 1
        if done % spec.log_every == 0 or done == steps:
            book.record(step, s, bar, engine.module)
        if done % spec.checkpoint_every == 0 and done < steps:
            save_checkpoint(engine, teacher, ckpt_dir, done, {"strikes": monitor.strikes})
    return engine.module, teacher, _result(spec, start, time.perf_counter() - t0, book)


def full_state_dict(module: nn.Module) -> dict[str, Tensor]:
    """A complete CPU state dict, gathering ZeRO-3 partitions when there are any."""
    params = list(module.parameters())
    if any(hasattr(p, "ds_id") for p in params):
        import deepspeed

        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

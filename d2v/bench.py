"""Measurements for the bench stage, all taken in one process so that their ratios hold on a noisy
machine: the matmul peak, a pretraining step's throughput, FLOPs (counted by
torch.utils.flop_counter), model-FLOP utilization and EMA share, and time-to-accuracy curves
(linear-probe score against pretraining wall time, the probes' own time left out).
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from d2v.config import DeepSpeedConfig
from d2v.distributed import DistInfo
from d2v.train import PretrainSpec, Student, Trainer

log = logging.getLogger(__name__)


def matmul_peak(dtype: torch.dtype, size: int, repeats: int, device: torch.device) -> float:
    """The best GFLOP/s of a (size x size) @ (size x size)^T product over `repeats` timed runs,
    through `F.linear`, the kernel a model's linear layers use: on a CPU without native bf16 a
    plain bf16 `a @ b` takes a reference kernel ~10x slower than the one `F.linear` takes (1.3
    against 13.9 GFLOP/s at 512 on an AMD EPYC), and MFU against it came out at 2.7."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    F.linear(a, b)  # warm-up
    best = math.inf
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        F.linear(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return 2 * size**3 / best / 1e9


def mfu(flops_per_step: float, step_s: float, peak_gflops: float) -> float:
    """Model FLOPs utilization: achieved FLOP/s over the matmul peak (GFLOP/s)."""
    return flops_per_step / step_s / (peak_gflops * 1e9)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Throughput:
    samples_per_s: float
    step_s: float  # median wall time of one step
    ema_s: float  # median wall time of the EMA update inside it
    flops_per_step: float  # forward + backward of student and teacher (no optimizer)
    batch_size: int
    bf16: bool

    @property
    def ema_share(self) -> float:
        return self.ema_s / self.step_s


def step_throughput(
    spec: PretrainSpec,
    ds: DeepSpeedConfig,
    dist_info: DistInfo,
    seed: int,
    warmup: int,
    timed: int,
) -> Throughput:
    """Time `timed` real train steps (DeepSpeed engine, EMA update included) after `warmup`
    steps, then count the FLOPs of one more step's forward and backward."""
    trainer = Trainer(spec, ds, dist_info, seed)
    for step in range(warmup):
        trainer.step(step)
    times, emas = [], []
    for step in range(warmup, warmup + timed):
        _sync(trainer.device)
        t = time.perf_counter()
        out = trainer.step(step)
        _sync(trainer.device)
        times.append(time.perf_counter() - t)
        emas.append(out.ema_s)
    source, mask = trainer.batch(warmup + timed)
    with FlopCounterMode(display=False) as counter:
        loss = trainer.forward(source, mask).loss
        trainer.engine.backward(loss)
    trainer.engine.zero_grad()
    step_s = statistics.median(times)
    return Throughput(
        samples_per_s=spec.optim.batch_size / step_s,
        step_s=step_s,
        ema_s=statistics.median(emas),
        flops_per_step=float(counter.get_total_flops()),
        batch_size=spec.optim.batch_size,
        bf16=trainer.bf16,
    )


@dataclass
class Curve:
    """Linear-probe score against pretraining wall time (probe time excluded)."""

    steps: list[int] = field(default_factory=list)
    wall_s: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)

    @property
    def final(self) -> float:
        return self.scores[-1]

    def first_reach(self, target: float, maximize: bool) -> float | None:
        """The wall time at which the score first reaches `target`; None if never."""
        for w, s in zip(self.wall_s, self.scores, strict=True):
            if (s >= target) if maximize else (s <= target):
                return w
        return None

    def at(self, wall: float) -> float:
        """The last score measured at or before `wall` seconds (the first if none)."""
        best = self.scores[0]
        for w, s in zip(self.wall_s, self.scores, strict=True):
            if w <= wall:
                best = s
        return best


def time_to_accuracy(
    spec: PretrainSpec,
    ds: DeepSpeedConfig,
    dist_info: DistInfo,
    seed: int,
    probe: Callable[[Student], float],
    probe_every: int,
) -> Curve:
    """Pretrain with `spec` (its own budget), scoring `probe` on the student at step 0, every
    `probe_every` steps and at the end; the wall time counts the train steps only."""
    trainer = Trainer(spec, ds, dist_info, seed)
    curve = Curve()
    train_s = 0.0

    def score(step: int) -> None:
        value = probe(trainer.student)
        trainer.student.train()
        curve.steps.append(step)
        curve.wall_s.append(train_s)
        curve.scores.append(value)
        log.info("step %d: probe %.3f after %.1f s of pretraining", step, value, train_s)

    score(0)
    steps = spec.optim.steps
    for step in tqdm(range(steps), desc="pretrain", mininterval=2.0):
        _sync(trainer.device)
        t = time.perf_counter()
        trainer.step(step)
        _sync(trainer.device)
        train_s += time.perf_counter() - t
        if (step + 1) % probe_every == 0 or step + 1 == steps:
            score(step + 1)
    return curve

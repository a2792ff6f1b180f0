"""The logged rows of a pretraining run (every `log_every` steps): what `train.pretrain` reports,
checks for collapse and hands to the stage's tracker and to callbacks."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from tqdm import tqdm

from d2v.callbacks import LogMetrics
from d2v.collapse import CollapseError, CollapseMonitor

if TYPE_CHECKING:
    from d2v.train import OnLog, StepOutput, Student, Trainer


def _mean_over_ranks(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.get_world_size() > 1:
        dist.all_reduce(t)
        t /= dist.get_world_size()
    return t.tolist()


# the monitors each logged row carries (the collapse check reads target_std)
MONITORS = (
    "loss",
    "target_std",
    "pred_std",
    "target_r2",
    "copy_r2",
    "interp_r2",
    "target_autocorr",
)


class Logbook:
    """The logged rows of a run: throughput since the last row, the monitors averaged over ranks,
    the stage's `log_metrics`, the progress bar, the collapse check and the `on_log` callback."""

    def __init__(
        self,
        trainer: Trainer,
        monitor: CollapseMonitor,
        log_metrics: LogMetrics | None,
        on_log: OnLog | None,
    ) -> None:
        self.trainer, self.monitor = trainer, monitor
        self.log_metrics, self.on_log = log_metrics, on_log
        self.history: list[dict[str, float]] = []
        self.last = dict.fromkeys(MONITORS, math.nan)
        self.t_log, self.n_log = time.perf_counter(), 0

    def count(self, rows: slice) -> None:
        self.n_log += rows.stop - rows.start

    def record(self, step: int, s: StepOutput, bar: tqdm, student: Student) -> None:
        """Row of the step just done (`step + 1`): log it, check collapse, run `on_log`."""
        trainer, done, out = self.trainer, step + 1, s.out
        rate = self.n_log * trainer.dist_info.world_size / (time.perf_counter() - self.t_log)
        diag = trainer.learnability(step)
        values = [out.loss, out.target_std, out.pred_std, out.target_r2]
        values = [v.item() for v in values] + [diag[k] for k in MONITORS[4:]]
        self.last = dict(zip(MONITORS, _mean_over_ranks(values, trainer.device), strict=True))
        t_std = self.last["target_std"]
        row = {**self.last, "lr": s.lr, "tau": s.tau, "samples_per_s": rate}
        self.history.append({"step": done, **row})
        if self.log_metrics is not None:
            self.log_metrics(row, done)
        bar.set_postfix(
            loss=f"{self.last['loss']:.4f}",
            tstd=f"{t_std:.3f}",
            r2=f"{self.last['target_r2']:.2f}",
            interp=f"{self.last['interp_r2']:.2f}",
        )
        self.t_log, self.n_log = time.perf_counter(), 0  # the diagnostic is not training time
        if self.monitor.check(done, t_std):
            raise CollapseError(
                f"collapsed at step {done}: target std {t_std:.4g} under "
                f"{trainer.spec.collapse.min_target_std} for {self.monitor.strikes} checks"
            )
        if self.on_log is not None:
            self.on_log(done, row, student)
            self.t_log = time.perf_counter()  # the callback's time is not training time

"""Optuna studies: the searched params and how trials are run, pruned and stored."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from d2v.config.base import check, signed


@dataclass(kw_only=True)
class SweepDim:
    """One searched param. scale: linear | log | int | one_minus_log (samples log(1 - x), the
    way an EMA decay matters: 0.999 vs 0.9999 is a 10x longer memory) | categorical.
    `param` and `scale` must be given; the rest is optional per dim (what its scale needs)."""

    param: str  # dotted params path, set as a Hydra override
    scale: str
    low: float | None = signed(None)  # a searched param may be negative
    high: float | None = signed(None)  # int scale: None = the model depth
    choices: list[Any] | None = None  # categorical values (str, int or float)
    enabled: bool = True

    def validate(self, p: str) -> None:
        scales = ("linear", "log", "int", "one_minus_log", "categorical")
        check(self.scale in scales, f"{p}.scale", self.scale, "one of " + ", ".join(scales))
        if self.scale == "categorical":
            check(bool(self.choices), f"{p}.choices", self.choices, "a non-empty list")
            return
        check(self.low is not None, f"{p}.low", self.low, "a number")
        if self.scale != "int":  # only an int scale has a default end: the model depth
            check(self.high is not None, f"{p}.high", self.high, "a number")
        if self.scale in ("log", "one_minus_log"):
            check(self.low > 0, f"{p}.low", self.low, "> 0 on a log scale")
        if self.scale == "one_minus_log":
            check(self.high is not None and self.high < 1, f"{p}.high", self.high, "< 1")
        if self.high is not None:
            check(self.high > self.low, f"{p}.high", self.high, f"> low={self.low}")


@dataclass(kw_only=True)
class SweepConfig:
    """One `sweep.<modality>` study (conf/sweep/<modality>.yaml gives every field: no defaults)."""

    task: str  # whose linear probe scores a trial
    metric: str | None  # the probe's metric that scores it (None: the task's official one)
    n_trials: int  # finished trials (complete + pruned + failed) the study stops at
    direction: str  # maximize | minimize
    storage: str | None  # None: an SQLite file beside the data; any SQLAlchemy URL
    study_name: str
    sampler: str  # tpe | random | grid (every categorical combination; ablations)
    pruner: str  # median | hyperband | successive_halving | none
    seed: int
    report_every: int  # steps between proxy reports (pruning points)
    heartbeat_s: int  # a worker's liveness beat in the storage
    grace_s: int  # a RUNNING trial without a beat for this long is failed (its worker died)
    probe_label_fraction: float
    overrides: list[str]  # Hydra overrides: the trial budget
    space: dict[str, SweepDim]

    def validate(self, p: str, tasks: dict) -> None:
        check(self.task in tasks, f"{p}.task", self.task, f"one of {sorted(tasks)}")
        check(self.n_trials >= 1, f"{p}.n_trials", self.n_trials, ">= 1")
        check(
            self.direction in ("maximize", "minimize"),
            f"{p}.direction",
            self.direction,
            "maximize or minimize",
        )
        samplers = ("tpe", "random", "grid")
        check(
            self.sampler in samplers, f"{p}.sampler", self.sampler, "one of " + ", ".join(samplers)
        )
        pruners = ("median", "hyperband", "successive_halving", "none")
        check(self.pruner in pruners, f"{p}.pruner", self.pruner, "one of " + ", ".join(pruners))
        check(self.report_every >= 1, f"{p}.report_every", self.report_every, ">= 1")
        # a zero beat makes Optuna fail; a grace within one beat fails live trials as dead
        check(self.heartbeat_s >= 1, f"{p}.heartbeat_s", self.heartbeat_s, ">= 1")
        check(
            self.grace_s > self.heartbeat_s,
            f"{p}.grace_s",
            self.grace_s,
            f"> heartbeat_s={self.heartbeat_s}",
        )
        check(
            0 < self.probe_label_fraction <= 1,
            f"{p}.probe_label_fraction",
            self.probe_label_fraction,
            "(0, 1]",
        )
        for name, dim in self.space.items():
            dim.validate(f"{p}.space.{name}")
            if self.sampler == "grid" and dim.enabled:
                check(
                    dim.scale == "categorical",
                    f"{p}.space.{name}.scale",
                    dim.scale,
                    "categorical under the grid sampler",
                )

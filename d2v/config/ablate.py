"""The paper's ablations as grid studies: the axes (top-K, target sublayer, per-layer target
normalization, seeds), the design that turns them into cells, and each cell's budget."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from d2v.config.base import Norm, Sublayer, check


class Design(str, enum.Enum):
    """How the axes become cells."""

    one_at_a_time = "one_at_a_time"  # the paper's: each axis varied alone from the default cell
    factorial = "factorial"  # every combination of the axes' values


@dataclass(kw_only=True)
class AblateConfig:
    """One modality's ablation grid (`ablate.<modality>`; conf/ablate/<modality>.yaml gives every
    field: no defaults). The axes vary the targets block of the modality's method in use
    (`pretrain.<modality>.method`); an empty axis keeps that block's own value."""

    design: Design
    top_k: list[int]  # K values, each in [1, model depth]
    sublayer: list[Sublayer]  # where targets are read (Table 5)
    norm: list[Norm]  # per-layer target norm; `none` = off
    seeds: list[int]  # pretraining seeds, a grid axis
    task: str  # whose linear probe scores a cell (the sweep's objective)
    metric: str | None  # the probe's metric (None: the task's official one)
    direction: str  # which way is better: the report's trends read it
    probe_label_fraction: float
    probe_seed: int  # the probe's label subset and head init: the same for every cell
    storage: str | None  # None: sqlite:///data/ablate.db; any SQLAlchemy URL
    study_name: str
    heartbeat_s: int
    grace_s: int  # a RUNNING cell silent this long is failed (its worker died)
    overrides: list[str]  # Hydra overrides: each cell's budget

    def axes(self) -> dict[str, list]:
        """The varied axes (non-empty), in the report's order."""
        axes = {"top_k": self.top_k, "sublayer": self.sublayer, "norm": self.norm}
        return {k: v for k, v in axes.items() if v}

    def validate(self, p: str, depth: int, tasks: dict) -> None:
        check(bool(self.axes()), p, "no axes", "at least one of top_k, sublayer, norm non-empty")
        for i, k in enumerate(self.top_k):
            check(1 <= k <= depth, f"{p}.top_k[{i}]", k, f"[1, depth={depth}]")
        for name, values in self.axes().items():
            check(len(set(values)) == len(values), f"{p}.{name}", values, "distinct values")
        check(
            len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds),
            f"{p}.seeds",
            self.seeds,
            "a non-empty list of distinct ints",
        )
        check(self.task in tasks, f"{p}.task", self.task, f"one of {sorted(tasks)}")
        check(
            self.direction in ("maximize", "minimize"),
            f"{p}.direction",
            self.direction,
            "maximize or minimize",
        )
        check(
            0 < self.probe_label_fraction <= 1,
            f"{p}.probe_label_fraction",
            self.probe_label_fraction,
            "(0, 1]",
        )
        check(self.heartbeat_s >= 1, f"{p}.heartbeat_s", self.heartbeat_s, ">= 1")
        check(self.grace_s > self.heartbeat_s, f"{p}.grace_s", self.grace_s, "> heartbeat_s")

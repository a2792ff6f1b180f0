"""Collapse monitor: all targets alike shows first as a falling target std over positions."""

from __future__ import annotations

from dataclasses import dataclass

from d2v.config import CollapseConfig


class CollapseError(RuntimeError):
    """The run collapsed: it is stopped and marked, never reported as a result."""


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class CollapseMonitor:
    cfg: CollapseConfig
    strikes: int = 0  # consecutive checks under the threshold

    def check(self, step: int, target_std: float) -> bool:
        """Record one logged value; True once the run counts as collapsed."""
        if step < self.cfg.check_after:
            return False
        self.strikes = self.strikes + 1 if target_std < self.cfg.min_target_std else 0
        return self.strikes >= self.cfg.patience

"""How the training loops report without knowing who listens: they call a `LogMetrics` they were
given (the stage passes `Tracker.log_metrics`; tests and sweeps pass their own, or nothing)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

LogMetrics = Callable[[Mapping[str, float], int], None]  # (metrics, step)

"""What `download` and `prepare` share: one tracked run per modality, named, tagged and
parameterized by the modality's data config, around the registry's function for the stage."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from d2v.config import Modality, Params
from d2v.registry import DataStep
from d2v.tracking import Tracker


def run_data_step(
    params: Params, modality: Modality, stage: str, step: Callable[..., DataStep], *dirs: Path
) -> DataStep:
    """`step(cfg, *dirs)` inside the tracked run `<stage>/<modality>`, its metrics logged."""
    tracker = Tracker(params.tracking)
    cfg = getattr(params.data, modality.value)
    with tracker.run(
        f"{stage}/{modality.value}",
        tags={"stage": stage, "modality": modality.value, "data_source": cfg.source},
        params={"data": {modality.value: cfg}},
    ):
        result = step(cfg, *dirs)
        if result.metrics:
            tracker.log_metrics(result.metrics)
    return result

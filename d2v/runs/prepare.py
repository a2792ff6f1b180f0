"""prepare@<modality>: decode and normalize raw data into shards that load fast."""

from __future__ import annotations

import logging
from pathlib import Path

from d2v.config import Modality, Params
from d2v.data.image_folder import prepare_image_folder
from d2v.tracking import Tracker

log = logging.getLogger(__name__)


def run_prepare(params: Params, modality: Modality, raw_dir: Path, out_dir: Path) -> dict:
    tracker = Tracker(params.tracking)
    cfg = params.data.vision
    with tracker.run(
        f"prepare/{modality.value}",
        tags={"stage": "prepare", "modality": modality.value, "data_source": cfg.source},
        params={"data": {modality.value: cfg}},
    ):
        meta = prepare_image_folder(raw_dir, out_dir, cfg.image_size, cfg.channels, cfg.on_corrupt)
        tracker.log_metrics({f"images_{k}": v for k, v in meta["counts"].items()})
        tracker.log_metrics({"skipped": meta["skipped"]["count"]})
        log.info("prepared %s: %s, %d skipped", out_dir, meta["counts"], meta["skipped"]["count"])
        return meta

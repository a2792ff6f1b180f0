"""download@<modality>: fetch or generate raw data in the on-disk layout the prepare stage reads."""

from __future__ import annotations

import logging
from pathlib import Path

from d2v.config import Modality, Params
from d2v.data.fashion_mnist import write_fashion_mnist
from d2v.data.imagenet import imagenet_archives, write_imagenet
from d2v.tracking import Tracker

log = logging.getLogger(__name__)


def run_download(params: Params, modality: Modality, out_dir: Path) -> dict:
    tracker = Tracker(params.tracking)
    cfg = params.data.vision
    with tracker.run(
        f"download/{modality.value}",
        tags={"stage": "download", "modality": modality.value, "data_source": cfg.source},
        params={"data": {modality.value: cfg}},
    ):
        if cfg.source == "fashion_mnist":
            stats = write_fashion_mnist(cfg.fashion_mnist_dir, out_dir, cfg.limit_per_split)
        else:
            archives = imagenet_archives(cfg.imagenet_dir or "")
            stats = write_imagenet(
                **archives, out_dir=out_dir, md5=cfg.imagenet_md5, limit_classes=cfg.limit_classes
            )
        counts = stats.get("counts", {})
        tracker.log_metrics({f"images_{k}": v for k, v in counts.items()})
        log.info("wrote %s: %s", out_dir, counts)
        return stats

"""Vision's raw data: Fashion-MNIST (Debian) or ImageNet archives written in ImageNet folder
layout (download), decoded into resized uint8 image shards (prepare). Registry entry: d2v/registry.py."""

from __future__ import annotations

from pathlib import Path

from d2v.config import VisionDataConfig
from d2v.registry import DataStep


def download(cfg: VisionDataConfig, out_dir: Path) -> DataStep:
    if cfg.source == "fashion_mnist":
        from d2v.data.fashion_mnist import write_fashion_mnist

        stats = write_fashion_mnist(cfg.fashion_mnist_dir, out_dir, cfg.limit_per_split)
    else:
        from d2v.data.imagenet import imagenet_archives, write_imagenet

        archives = imagenet_archives(cfg.imagenet_dir or "")
        stats = write_imagenet(
            **archives, out_dir=out_dir, md5=cfg.imagenet_md5, limit_classes=cfg.limit_classes
        )
    return DataStep(stats, {f"images_{k}": v for k, v in stats.get("counts", {}).items()})


def prepare(cfg: VisionDataConfig, raw_dir: Path, out_dir: Path) -> DataStep:
    from d2v.data.image_folder import prepare_image_folder

    meta = prepare_image_folder(raw_dir, out_dir, cfg.image_size, cfg.channels, cfg.on_corrupt)
    metrics = {f"images_{k}": v for k, v in meta.counts.items()}
    return DataStep(meta.to_json(), {**metrics, "skipped": meta.skipped["count"]})

"""Read prepared image shards (see `image_folder.py`) and serve normalized batches.

Dims: N images in a split, B batch, C channels, H = W = image size.
A batch is made with one fancy-index gather over the whole split, one `torch.from_numpy` and one
normalize op: no per-image Python work and no image files opened during training.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from d2v.data.arrays import load_array
from d2v.data.errors import DataError
from d2v.data.meta import VisionMeta, read_meta


@dataclass
class ImageSplit:
    """One split of a prepared image folder.

    images: (N, H, W, C) uint8. A split stored as one shard is a read-only memmap (no copy, pages
        read on demand); several shards are concatenated into memory (47 MB for Fashion-MNIST
        train; ImageNet-1k at 224 px would need ~190 GB, so prepare it with one shard per split,
        `shard_size` >= N, to keep it memory-mapped).
    labels: (N,) int64 class indices into `classes`.
    """

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def load_image_split(prepared_dir: str | os.PathLike, split: str) -> ImageSplit:
    """Load `split` ("train" or "val") of a prepared folder; checks shards against meta.json."""
    meta = read_meta(prepared_dir, VisionMeta)
    split_dir = Path(prepared_dir) / split
    if split not in meta.counts:
        raise DataError(f"split {split!r} not in {split_dir.parent / 'meta.json'}")
    images, labels = [], []
    for shard in range(meta.shards[split]):
        images_path = split_dir / f"images-{shard:05d}.npy"
        labels_path = split_dir / f"labels-{shard:05d}.npy"
        images.append(load_array(images_path, mmap_mode="r"))
        labels.append(load_array(labels_path))
        if len(images[-1]) != len(labels[-1]) or images[-1].ndim != 4:
            raise DataError(f"shard {images_path}: images {images[-1].shape} for {labels_path}")
    all_images = images[0] if len(images) == 1 else np.concatenate(images)
    all_labels = np.concatenate(labels).astype(np.int64, copy=False)
    if len(all_labels) != meta.counts[split]:
        raise DataError(f"{split_dir}: {len(all_labels)} images, meta.json says {meta.counts}")
    return ImageSplit(all_images, all_labels, list(meta.classes))


class ImageBatch(NamedTuple):
    images: torch.Tensor  # (B, C, H, W) float32, normalized
    labels: torch.Tensor  # (B,) int64


class ImageBatches:
    """Iterate over an ImageSplit (or a subset of it) in normalized float32 batches.

    Each pass (`iter`) draws a new order from `generator`, so epochs differ but the whole sequence
    of epochs is fixed by the seed. `mean`/`std`: per channel, in [0, 1] units (meta.json's).
    `indices`: positions in the split to draw from (e.g. a `stratified_subset`), default all.
    """

    def __init__(
        self,
        split: ImageSplit,
        batch_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        generator: torch.Generator | int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        indices: np.ndarray | None = None,
    ) -> None:
        channels = split.images.shape[-1]
        if len(mean) != channels or len(std) != channels:
            raise ValueError(f"mean/std need {channels} values, got {len(mean)}/{len(std)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.indices = np.arange(len(split)) if indices is None else np.asarray(indices, np.int64)
        if isinstance(generator, int):
            generator = torch.Generator().manual_seed(generator)
        self.generator = generator
        # (x / 255 - mean) / std == (x - 255 mean) / (255 std): one sub and one div per batch.
        self._shift = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1) * 255.0
        self._scale = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1) * 255.0

    def __len__(self) -> int:
        """Batches per pass."""
        n = len(self.indices)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[ImageBatch]:
        order = self.indices
        if self.shuffle:
            perm = torch.randperm(len(order), generator=self.generator).numpy()
            order = order[perm]
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield self.batch(idx)

    def batch(self, idx: np.ndarray) -> ImageBatch:
        """The normalized batch of split positions `idx` (B,): images (B, C, H, W), labels (B,)."""
        pixels = torch.from_numpy(np.ascontiguousarray(self.split.images[idx]))  # (B, H, W, C)
        pixels = pixels.permute(0, 3, 1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        images = pixels.sub_(self._shift).div_(self._scale)
        return ImageBatch(images, torch.from_numpy(self.split.labels[idx]))


def stratified_subset(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of a class-balanced subset (low-label fine-tuning).

    Per class: round-half-up(fraction * count) examples, at least 1, drawn without replacement with
    a generator seeded by `seed` (same seed, same subset). labels: (N,) -> indices (M,) int64.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels):
        members = np.flatnonzero(labels == cls)
        k = max(1, int(np.floor(fraction * len(members) + 0.5)))
        chosen.append(rng.choice(members, size=min(k, len(members)), replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64) if chosen else np.zeros(0, np.int64)

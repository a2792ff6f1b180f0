"""Decode an ImageNet-layout image folder into fixed-size uint8 shards for training.

Input: `src_dir/{train,val}/<class>/<image>` (Fashion-MNIST as written by `fashion_mnist.py`, or
ImageNet-1k as written by `imagenet.py`). Output, written atomically as a whole:

    out_dir/meta.json                      classes, counts, skipped files, size, train mean/std
    out_dir/<split>/images-00000.npy       uint8 (N, H, W, C), N = shard_size except the last shard
    out_dir/<split>/labels-00000.npy       int64 (N,), index into meta["classes"]

Dims: N images, H = W = image_size, C = channels (1 grey, 3 RGB). Images are decoded once here,
in a process pool, so training reads arrays and never opens an image file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from d2v.atomic import atomic_path, write_json
from d2v.data.errors import DataError
from d2v.data.meta import VisionMeta
from d2v.data.pool import ordered_map, process_pool

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
ON_CORRUPT = ("skip", "fail")
IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
)
_MODES = {1: "L", 3: "RGB"}
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
_CHUNK = 256  # images per worker task (256 x 224 x 224 x 3 = 38 MB at ImageNet size)


def resize_center_crop(image: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to `size` (bicubic), then center crop `size` x `size`.

    Rounding as torchvision's Resize(size) + CenterCrop(size); a `size` x `size` image is untouched.
    """
    w, h = image.size
    if (w, h) == (size, size):
        return image
    new = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    if new != (w, h):
        image = image.resize(new, Image.Resampling.BICUBIC)
    left, top = int(round((new[0] - size) / 2)), int(round((new[1] - size) / 2))
    return image.crop((left, top, left + size, top + size))


_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit greyscale (PNG, TIFF, PGM)


def _to_8bit(im: Image.Image, path: str | os.PathLike) -> Image.Image:
    """8 bits per channel, scaled by the source's bit depth: Pillow's convert("L") clips 16-bit
    values at 255 (a 16-bit greyscale image turns white). Depths we cannot tell are refused."""
    if im.mode not in _WIDE_MODES and im.mode != "F":
        return im
    wide = np.asarray(im)
    if im.mode == "F" or wide.size and (wide.min() < 0 or wide.max() > 65535):
        raise DataError(f"unsupported pixel format {im.mode} (not 8- or 16-bit) in {path}")
    return Image.fromarray((wide.astype(np.uint32) >> 8).astype(np.uint8), mode="L")


def load_image(path: str | os.PathLike, image_size: int, channels: int) -> np.ndarray:
    """Decode, convert to L or RGB, resize and crop one image: uint8 (H, W, C).

    Raises DataError naming the file if it is corrupt, truncated, unreadable or of a bit depth
    other than 8 or 16.
    """
    try:
        with Image.open(path) as im:
            converted = _to_8bit(im, path).convert(_MODES[channels])  # decodes the whole file
    except _DECODE_ERRORS as e:
        raise DataError(f"cannot decode image {path}: {e}") from e
    array = np.asarray(resize_center_crop(converted, image_size), dtype=np.uint8)
    return array.reshape(image_size, image_size, channels)


@dataclass
class _Decoded:
    """A worker's result for one chunk of files."""

    images: np.ndarray  # (k, H, W, C) uint8, the files that decoded
    kept: list[int]  # positions in the chunk of those files
    errors: list[tuple[int, str]]  # (position in the chunk, message) of the files that did not
    histogram: np.ndarray  # (C, 256) int64 pixel-value counts, for exact mean/std


def _decode_chunk(paths: list[Path], image_size: int, channels: int) -> _Decoded:
    images = np.empty((len(paths), image_size, image_size, channels), np.uint8)
    kept, errors = [], []
    for i, path in enumerate(paths):
        try:
            images[len(kept)] = load_image(path, image_size, channels)
            kept.append(i)
        except DataError as e:
            errors.append((i, str(e)))
    images = images[: len(kept)]
    histogram = np.stack(
        [np.bincount(images[..., c].ravel(), minlength=256) for c in range(channels)]
    ).astype(np.int64)
    return _Decoded(images, kept, errors, histogram)


class _ShardWriter:
    """Collects decoded images and writes them as fixed-size shards."""

    def __init__(self, split_dir: Path, shard_size: int, image_shape: tuple[int, int, int]):
        self.split_dir = split_dir
        self.images = np.empty((shard_size, *image_shape), np.uint8)
        self.labels = np.empty(shard_size, np.int64)
        self.filled = 0
        self.shards = 0
        self.count = 0
        split_dir.mkdir(parents=True)

    def add(self, images: np.ndarray, labels: np.ndarray) -> None:
        while len(images):
            n = min(len(images), len(self.images) - self.filled)
            self.images[self.filled : self.filled + n] = images[:n]
            self.labels[self.filled : self.filled + n] = labels[:n]
            self.filled += n
            images, labels = images[n:], labels[n:]
            if self.filled == len(self.images):
                self._flush()

    def close(self) -> None:
        if self.filled or not self.shards:  # an empty split still gets one (empty) shard
            self._flush()

    def _flush(self) -> None:
        np.save(self.split_dir / f"images-{self.shards:05d}.npy", self.images[: self.filled])
        np.save(self.split_dir / f"labels-{self.shards:05d}.npy", self.labels[: self.filled])
        self.count += self.filled
        self.shards += 1
        self.filled = 0


@dataclass
class _SplitResult:
    count: int = 0
    shards: int = 0
    skipped: list[str] = field(default_factory=list)
    histogram: np.ndarray | None = None


def _list_split(split_dir: Path, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """Image files of a split in sorted (class, name) order, and their class indices."""
    index = {name: i for i, name in enumerate(classes)}
    files, labels, ignored = [], [], 0
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if class_dir.name.startswith("."):
            continue
        if class_dir.name not in index:
            raise DataError(f"class folder {class_dir} is not a class of the train split")
        for path in sorted(class_dir.iterdir()):
            if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                files.append(path)
                labels.append(index[class_dir.name])
            else:
                ignored += 1
    if ignored:
        log.info("ignored %d non-image entries in %s", ignored, split_dir)
    return files, np.asarray(labels, np.int64)


def _prepare_split(
    pool: concurrent.futures.Executor | None,
    src_dir: Path,
    split: str,
    out_split_dir: Path,
    classes: list[str],
    image_size: int,
    channels: int,
    on_corrupt: str,
    shard_size: int,
    window: int,
) -> _SplitResult:
    files, labels = _list_split(src_dir / split, classes)
    writer = _ShardWriter(out_split_dir, shard_size, (image_size, image_size, channels))
    result = _SplitResult(histogram=np.zeros((channels, 256), np.int64))
    starts = range(0, len(files), _CHUNK)
    tasks = ((files[s : s + _CHUNK], image_size, channels) for s in starts)
    decoded_chunks = contextlib.closing(ordered_map(pool, _decode_chunk, tasks, window))
    with (
        tqdm(total=len(files), desc=f"prepare {split}", unit=" img") as bar,
        decoded_chunks as chunks,
    ):
        for start, decoded in zip(starts, chunks, strict=True):
            for i, message in decoded.errors:
                if on_corrupt == "fail":
                    raise DataError(message)
                log.debug("skipping: %s", message)
                result.skipped.append(files[start + i].relative_to(src_dir).as_posix())
            writer.add(decoded.images, labels[start + np.asarray(decoded.kept, np.int64)])
            result.histogram += decoded.histogram
            bar.update(len(decoded.kept) + len(decoded.errors))
    writer.close()
    result.count, result.shards = writer.count, writer.shards
    return result


def _mean_std(histogram: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of pixel values scaled to [0, 1], from (C, 256) counts."""
    values = np.arange(256, dtype=np.float64) / 255.0
    n = histogram.sum(axis=1)
    mean = histogram @ values / n
    var = histogram @ values**2 / n - mean**2
    return mean.tolist(), np.sqrt(np.maximum(var, 0.0)).tolist()


def prepare_image_folder(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    image_size: int,
    channels: int,
    on_corrupt: str = "skip",
    shard_size: int = 10000,
    workers: int = 2,
) -> VisionMeta:
    """Decode `src_dir/{train,val}/<class>/*` into uint8 shards and meta.json under `out_dir`.

    Classes are the sorted folder names of `train` (required); `val`, if present, uses the same
    mapping. Files are read in sorted order, so the output is deterministic. Images that do not
    decode are skipped, counted and listed in meta.json (`on_corrupt="skip"`), or stop the run with a
    DataError naming the file (`"fail"`); either way `out_dir` appears only when complete.
    `workers` decode processes (1 = in this process). Returns the meta written to meta.json:
    classes, image_size, channels, shard_size, counts and shards per split, skipped
    `{"count", "files"}`, and per-channel train `mean`/`std` in [0, 1].
    """
    if channels not in _MODES:
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
    if image_size < 1 or shard_size < 1:
        raise ValueError(f"image_size and shard_size must be positive: {image_size}, {shard_size}")
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    train_dir = src_dir / "train"
    if not train_dir.is_dir():
        raise DataError(f"no train split folder {train_dir}")
    classes = sorted(p.name for p in train_dir.iterdir() if p.is_dir() and p.name[0] != ".")
    if not classes:
        raise DataError(f"no class folders in {train_dir}")
    results: dict[str, _SplitResult] = {}
    with atomic_path(out_dir) as tmp, process_pool(workers) as pool:
        for split in (s for s in SPLITS if (src_dir / s).is_dir()):
            results[split] = _prepare_split(
                pool,
                src_dir,
                split,
                tmp / split,
                classes,
                image_size,
                channels,
                on_corrupt,
                shard_size,
                window=2 * max(workers, 1),
            )
        if results["train"].count == 0:
            raise DataError(f"no readable images in {train_dir}")
        mean, std = _mean_std(results["train"].histogram)
        skipped = [name for r in results.values() for name in r.skipped]
        meta = VisionMeta(
            classes=classes,
            image_size=image_size,
            channels=channels,
            shard_size=shard_size,
            counts={split: r.count for split, r in results.items()},
            shards={split: r.shards for split, r in results.items()},
            skipped={"count": len(skipped), "files": skipped},
            mean=mean,
            std=std,
        )
        write_json(tmp / "meta.json", meta.to_json())
    if skipped:
        log.warning(
            "skipped %d unreadable images (listed in %s): %s",
            len(skipped),
            out_dir / "meta.json",
            ", ".join(skipped[:5]),
        )
    log.info("prepared %s: %s", out_dir, meta.counts)
    return meta

"""Fashion-MNIST (the embedded vision default) from Debian's `dataset-fashion-mnist`, written out in
ImageNet folder layout so that one image-folder reader serves it and ImageNet-1k.

Layout written: `out_dir/{train,val}/<class>/<idx:05d>.png`, 28x28 grey PNGs, `idx` the image's
position in its source file (t10k is the val split). PNGs carry no timestamps and are encoded with
fixed settings, so a rerun is byte-identical (good for DVC's cache).
"""

from __future__ import annotations

import concurrent.futures
import gzip
import io
import logging
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from d2v.atomic import atomic_path
from d2v.data.archive import DEFAULT_LIMITS, ExtractLimits
from d2v.data.errors import DataError, SourceMissingError
from d2v.data.pool import process_pool

log = logging.getLogger(__name__)

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
DEBIAN_PACKAGE = "dataset-fashion-mnist"
SOURCE_PARAM = "data.vision.source"

# Label order of the dataset's README (zalandoresearch/fashion-mnist), made filesystem-safe.
CLASSES: tuple[str, ...] = (
    "t-shirt_top",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle_boot",
)

# split written -> file prefix in the source folder
SPLITS = {"train": "train", "val": "t10k"}

# IDX type byte -> numpy dtype (all big-endian); http://yann.lecun.com/exdb/mnist/
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_CHUNK = 1000  # images per worker task: large enough to amortize pickling, small for progress


def read_idx(path: str | os.PathLike, limits: ExtractLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Read an IDX file (gzipped or not) into an array of the dims its header states.

    Header: two zero bytes, a type byte, the number of dims, then each dim as big-endian uint32.
    Raises DataError naming the file on a bad magic, unknown type, or a data length that does not
    match the dims (truncated or trailing bytes). Only the bytes the header announces are read, and
    only within `limits` (a gzip that claims or inflates to far more than its size is refused).
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            gzipped = f.read(2) == b"\x1f\x8b"
        size = path.stat().st_size
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise DataError(f"bad IDX magic in {path}: {head[:4].hex()}")
            if head[2] not in _IDX_DTYPES:
                raise DataError(f"unknown IDX data type 0x{head[2]:02x} in {path}")
            dtype, ndim = np.dtype(_IDX_DTYPES[head[2]]), head[3]
            dims_raw = f.read(4 * ndim)
            if ndim == 0 or len(dims_raw) < 4 * ndim:
                raise DataError(f"truncated IDX header in {path}")
            dims = struct.unpack(f">{ndim}I", dims_raw)
            expected = math.prod(dims) * dtype.itemsize
            _check_announced(path, expected, size, limits)
            data = f.read(expected + 1)  # one byte more tells trailing bytes apart
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read IDX file {path}: {e}") from e
    if len(data) != expected:
        raise DataError(
            f"IDX file {path} has {len(data)}{'+' if len(data) > expected else ''} data bytes, "
            f"expected {expected} for dims {dims} (truncated or corrupt)"
        )
    return np.frombuffer(data, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def _check_announced(path: Path, expected: int, size: int, limits: ExtractLimits) -> None:
    """Refuse an IDX header that announces more than the limits allow, before reading it."""
    if expected > limits.max_member_bytes:
        raise DataError(f"IDX file {path} announces {expected} bytes: over the per-file limit")
    if expected > limits.ratio_after and expected / max(size, 1) > limits.max_ratio:
        raise DataError(
            f"IDX file {path} announces {expected} bytes from {size} on disk: over "
            f"{limits.max_ratio:g}x (a decompression bomb?)"
        )


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of a grey `(H, W)` uint8 image; fixed settings and no metadata, so deterministic."""
    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG", compress_level=6, optimize=False)
    return buf.getvalue()


def _write_pngs(split_dir: Path, start: int, images: np.ndarray, labels: np.ndarray) -> int:
    """Worker: write `images` (N, 28, 28) as PNGs numbered from `start` into their class folders."""
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        path = split_dir / CLASSES[label] / f"{start + i:05d}.png"
        path.write_bytes(encode_png(image))
    return len(images)


def _source_files(src_dir: Path) -> dict[str, tuple[Path, Path]]:
    files = {
        split: (
            src_dir / f"{prefix}-images-idx3-ubyte.gz",
            src_dir / f"{prefix}-labels-idx1-ubyte.gz",
        )
        for split, prefix in SPLITS.items()
    }
    missing = [str(p) for pair in files.values() for p in pair if not p.is_file()]
    if missing:
        raise SourceMissingError(
            f"Debian package {DEBIAN_PACKAGE}", SOURCE_PARAM, f"not found: {', '.join(missing)}"
        )
    return files


def _read_split(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images (N, H, W), got {images.shape}")
    if labels.shape != images.shape[:1]:
        raise DataError(f"{labels_path}: {labels.shape[0]} labels for {len(images)} images")
    if labels.size and labels.max() >= len(CLASSES):
        raise DataError(f"{labels_path}: label {labels.max()} outside 0..{len(CLASSES) - 1}")
    return images, labels


def write_fashion_mnist(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    limit_per_split: int | None = None,
    workers: int = 2,
) -> dict:
    """Write Fashion-MNIST's IDX files in `src_dir` as PNGs in ImageNet layout under `out_dir`.

    `limit_per_split` keeps the first N images of each split (smoke tests). `workers` processes
    encode and write PNGs (1 = in this process). The whole `out_dir` is written atomically.
    Returns `{"classes": [...], "counts": {split: n}, "class_counts": {split: {class: n}}}`.
    Raises SourceMissingError (naming the Debian package and `data.vision.source`) if the files are
    absent, DataError on a corrupt file.
    """
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    files = _source_files(src_dir)
    stats: dict = {"classes": list(CLASSES), "counts": {}, "class_counts": {}}
    with atomic_path(out_dir) as tmp, process_pool(workers) as pool:
        for split, (images_path, labels_path) in files.items():
            images, labels = _read_split(images_path, labels_path)
            images, labels = images[:limit_per_split], labels[:limit_per_split]
            split_dir = tmp / split
            for name in CLASSES:
                (split_dir / name).mkdir(parents=True)
            _write_split(pool, split_dir, images, labels, desc=f"fashion-mnist {split}")
            stats["counts"][split] = len(images)
            per_class = np.bincount(labels, minlength=len(CLASSES))
            stats["class_counts"][split] = dict(zip(CLASSES, per_class.tolist(), strict=True))
    log.info("wrote Fashion-MNIST to %s: %s", out_dir, stats["counts"])
    return stats


def _write_split(
    pool: concurrent.futures.Executor | None,
    split_dir: Path,
    images: np.ndarray,
    labels: np.ndarray,
    desc: str,
) -> None:
    chunks = [
        (split_dir, s, images[s : s + _CHUNK], labels[s : s + _CHUNK])
        for s in range(0, len(images), _CHUNK)
    ]
    with tqdm(total=len(images), desc=desc, unit=" img") as bar:
        if pool is None:
            for chunk in chunks:
                bar.update(_write_pngs(*chunk))
            return
        futures = [pool.submit(_write_pngs, *chunk) for chunk in chunks]
        try:
            for future in concurrent.futures.as_completed(futures):
                bar.update(future.result())
        except BaseException:
            for future in futures:
                future.cancel()
            raise

"""ImageNet-1k (ILSVRC2012) from the user's local archives, written in ImageNet folder layout.

ImageNet cannot be downloaded anonymously: the user points `data.vision.imagenet_dir` at the
official archives. Layout written (atomically, as a whole):

    out_dir/train/<wnid>/*.JPEG     from the train tar, which holds one `<wnid>.tar` per class
    out_dir/val/<wnid>/*.JPEG       from the flat val tar, labelled with the devkit's ground truth

The devkit's `data/ILSVRC2012_validation_ground_truth.txt` lists the 1-based ILSVRC2012_ID of each
val image in file order; `data/meta.mat`'s `synsets` struct array maps ILSVRC2012_ID to WNID, ids
1..1000 being the leaf classes. Sorted WNIDs are the usual class index order.
"""

from __future__ import annotations

import io
import logging
import os
import posixpath
import re
import shutil
import tarfile
from collections.abc import Mapping
from pathlib import Path

import scipy.io
from tqdm import tqdm

from d2v.atomic import atomic_path
from d2v.data.archive import extract_tar_fileobj, verify_md5
from d2v.data.errors import DataError, SourceMissingError

log = logging.getLogger(__name__)

SOURCE_PARAM = "data.vision.imagenet_dir"
ARCHIVE_NAMES = {
    "train_tar": "ILSVRC2012_img_train.tar",
    "val_tar": "ILSVRC2012_img_val.tar",
    "devkit_tar": "ILSVRC2012_devkit_t12.tar.gz",
}
# Official md5 sums of the ILSVRC2012 archives (as published with the image-net.org downloads).
IMAGENET_MD5: dict[str, str | None] = {
    "train": "1d675b47d978889d74fa0da5fadfb00e",
    "val": "29b22e2961454d5413ddabcf34fc5622",
    "devkit": "fa75699e90414af021442c21a62c3abf",
}
DEVKIT_GROUND_TRUTH = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "ILSVRC2012_devkit_t12/data/meta.mat"
NUM_LEAF_IDS = 1000  # ILSVRC2012_IDs 1..1000 are the classes; higher ids are inner WordNet nodes
_CLASS_TAR = re.compile(r"^(n\d{8})\.tar$")


def imagenet_archives(imagenet_dir: str | os.PathLike) -> dict[str, Path]:
    """The official archive paths in `imagenet_dir`, keyed as `write_imagenet`'s arguments."""
    return {key: Path(imagenet_dir) / name for key, name in ARCHIVE_NAMES.items()}


def _read_members(tar_path: Path, names: list[str]) -> dict[str, bytes]:
    """Bytes of the named regular-file entries of a tar, read in memory (nothing written)."""
    wanted = {posixpath.normpath(n): n for n in names}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(tar_path, "r|*") as tar:
            for member in tar:
                name = wanted.get(posixpath.normpath(member.name))
                if name is not None and member.isfile():
                    found[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"cannot read devkit {tar_path}: {e}") from e
    missing = sorted(set(names) - set(found))
    if missing:
        raise DataError(f"devkit {tar_path} lacks {', '.join(missing)}")
    return found


def read_devkit(devkit_tar: str | os.PathLike) -> tuple[dict[int, str], list[int]]:
    """(leaf ILSVRC2012_ID -> WNID, ground-truth ILSVRC2012_ID of each val image in order)."""
    devkit_tar = Path(devkit_tar)
    files = _read_members(devkit_tar, [DEVKIT_META, DEVKIT_GROUND_TRUTH])
    where = f"{devkit_tar}:{DEVKIT_META}"
    try:
        synsets = scipy.io.loadmat(io.BytesIO(files[DEVKIT_META]), squeeze_me=True)["synsets"]
        ids = [int(i) for i in synsets["ILSVRC2012_ID"].ravel()]
        wnids = [str(w) for w in synsets["WNID"].ravel()]
        children = [int(c) for c in synsets["num_children"].ravel()]
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"cannot read synsets from {where}: {e}") from e
    leaves = {}
    for id_, wnid, n_children in zip(ids, wnids, children, strict=True):
        if 1 <= id_ <= NUM_LEAF_IDS:
            if n_children != 0 or not re.fullmatch(r"n\d{8}", wnid):
                raise DataError(f"{where}: id {id_} ({wnid!r}) is not a leaf class")
            leaves[id_] = wnid
    where = f"{devkit_tar}:{DEVKIT_GROUND_TRUTH}"
    try:
        truth = [int(line) for line in files[DEVKIT_GROUND_TRUTH].decode().split()]
    except ValueError as e:
        raise DataError(f"cannot parse {where}: {e}") from e
    unknown = sorted(set(truth) - set(leaves))
    if unknown:
        raise DataError(f"{where}: ids {unknown[:5]} are not leaf classes in {DEVKIT_META}")
    return leaves, truth


def _write_train(train_tar: Path, out: Path, wnids: set[str], known: set[str]) -> int:
    """Extract the per-class inner tars for `wnids` into `out/<wnid>/`; returns the image count."""
    count, seen = 0, set()
    try:
        with (
            tarfile.open(train_tar, "r:*") as outer,
            tqdm(total=len(wnids), desc="train classes") as bar,
        ):
            for member in outer:
                if member.isdir():
                    continue
                match = _CLASS_TAR.match(member.name)
                if not member.isfile() or match is None or match[1] not in known:
                    raise DataError(f"unexpected entry {member.name!r} in {train_tar}")
                if match[1] not in wnids:
                    continue
                archive = f"{train_tar}:{member.name}"
                images = extract_tar_fileobj(
                    outer.extractfile(member), out / match[1], archive=archive
                )
                count += len(images)
                seen.add(match[1])
                bar.update(1)
    except (tarfile.TarError, EOFError) as e:
        raise DataError(f"cannot read train tar {train_tar}: {e}") from e
    missing = sorted(wnids - seen)
    if missing:
        raise DataError(f"{train_tar} lacks class tars {', '.join(missing[:5])} ({len(missing)})")
    return count


def _write_val(val_tar: Path, out: Path, labels: dict[str, str]) -> int:
    """Extract the val images named in `labels` (file name -> WNID) into `out/<wnid>/`."""
    flat = out.with_name(f".{out.name}.flat")
    with open(val_tar, "rb") as f:
        extract_tar_fileobj(f, flat, members=labels, archive=str(val_tar), progress=True)
    for name, wnid in labels.items():
        (out / wnid).mkdir(parents=True, exist_ok=True)
        os.rename(flat / name, out / wnid / name)
    shutil.rmtree(flat)
    return len(labels)


def write_imagenet(
    train_tar: str | os.PathLike,
    val_tar: str | os.PathLike,
    devkit_tar: str | os.PathLike,
    out_dir: str | os.PathLike,
    md5: Mapping[str, str | None] = IMAGENET_MD5,
    limit_classes: int | None = None,
) -> dict:
    """Write ImageNet-1k from its local archives in folder layout under `out_dir` (atomically).

    `md5`: expected sums keyed "train", "val", "devkit"; a key left out keeps the official sum,
    None skips that check. All three are verified before anything is written. `limit_classes`
    keeps the first N classes in sorted WNID order (smoke tests). Returns
    `{"classes": [wnid, ...], "counts": {"train": n, "val": n}}`.
    Raises SourceMissingError (naming the path and `data.vision.imagenet_dir`) if an archive is
    absent, DataError on a checksum mismatch, unsafe entry or inconsistent devkit.
    """
    archives = {"train": Path(train_tar), "val": Path(val_tar), "devkit": Path(devkit_tar)}
    unknown = set(md5) - set(IMAGENET_MD5)
    if unknown:
        raise ValueError(f"unknown md5 keys {sorted(unknown)}; expected {sorted(IMAGENET_MD5)}")
    for path in archives.values():
        if not path.is_file():
            raise SourceMissingError(
                f"local archive {path}", SOURCE_PARAM, "ImageNet cannot be downloaded anonymously"
            )
    expected = {**IMAGENET_MD5, **md5}
    for key, path in archives.items():
        verify_md5(path, expected[key])
    leaves, truth = read_devkit(archives["devkit"])
    classes = sorted(set(leaves.values()))[:limit_classes]
    selected = set(classes)
    val_labels = {
        f"ILSVRC2012_val_{i:08d}.JPEG": leaves[id_]
        for i, id_ in enumerate(truth, start=1)
        if leaves[id_] in selected
    }
    with atomic_path(out_dir) as tmp:
        counts = {
            "train": _write_train(archives["train"], tmp / "train", selected, set(leaves.values())),
            "val": _write_val(archives["val"], tmp / "val", val_labels),
        }
    log.info("wrote ImageNet (%d classes) to %s: %s", len(classes), out_dir, counts)
    return {"classes": classes, "counts": counts}

"""Vision data layer: IDX reading, Fashion-MNIST and ImageNet writers, safe tar extraction,
image-folder preparation into shards, and the batch iterator."""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from d2v.data.archive import md5sum, verify_md5
from d2v.data.errors import DataError, SourceMissingError
from d2v.data.fashion_mnist import CLASSES, DEBIAN_DIR, read_idx, write_fashion_mnist
from d2v.data.image_folder import load_image, prepare_image_folder
from d2v.data.imagenet import DEVKIT_GROUND_TRUTH, DEVKIT_META, write_imagenet
from d2v.data.meta import VisionMeta, read_meta
from d2v.data.shards import (
    ImageBatches,
    ImageSplit,
    load_image_split,
    stratified_subset,
)
from tests.helpers import safe_extract_tar

# ---------------------------------------------------------------- helpers


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: magic (0, 0, 0x08, ndim), big-endian dims, data."""
    return (
        bytes([0, 0, 0x08, array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )


def write_idx_gz(path: Path, array: np.ndarray) -> Path:
    # mtime=0: the gzip header would otherwise hold the time of writing
    path.write_bytes(gzip.compress(idx_bytes(array), mtime=0))
    return path


def fake_fashion_source(root: Path, n_train: int = 12, n_val: int = 5) -> Path:
    root.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_val)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % len(CLASSES)).astype(np.uint8)
        write_idx_gz(root / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx_gz(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def add_file(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def add_link(tar: tarfile.TarFile, name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    tar.addfile(info)


def jpeg_bytes(seed: int, size: tuple[int, int] = (12, 10)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG")
    return buf.getvalue()


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def leftovers(parent: Path) -> list[str]:
    """Hidden temporaries an atomic write would leave behind if it failed to clean up."""
    return [p.name for p in parent.iterdir() if p.name.startswith(".")]


# ---------------------------------------------------------------- IDX / Fashion-MNIST


def test_read_idx_round_trip(tmp_path):
    array = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    np.testing.assert_array_equal(read_idx(write_idx_gz(tmp_path / "a.gz", array)), array)
    raw = tmp_path / "a.idx"  # uncompressed IDX reads too
    raw.write_bytes(idx_bytes(array))
    np.testing.assert_array_equal(read_idx(raw), array)


def test_read_idx_truncated_or_bad_magic_names_file(tmp_path):
    data = idx_bytes(np.zeros((3, 4, 5), np.uint8))
    truncated = tmp_path / "truncated-idx3-ubyte.gz"
    truncated.write_bytes(gzip.compress(data[:-7]))
    with pytest.raises(DataError, match="truncated-idx3-ubyte.gz"):
        read_idx(truncated)
    cut_gzip = tmp_path / "cut.gz"
    cut_gzip.write_bytes(gzip.compress(data)[:-10])
    with pytest.raises(DataError, match="cut.gz"):
        read_idx(cut_gzip)
    bad = tmp_path / "bad-magic"
    bad.write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(DataError, match="bad-magic"):
        read_idx(bad)


def test_write_fashion_mnist_layout_and_byte_identical_rerun(tmp_path):
    src = fake_fashion_source(tmp_path / "src")
    out = tmp_path / "raw"
    stats = write_fashion_mnist(src, out, workers=1)
    assert stats["counts"] == {"train": 12, "val": 5}
    assert sorted(p.name for p in (out / "train").iterdir()) == sorted(CLASSES)
    # image 11 of train has label 11 % 10 = 1 -> trouser; t10k image 3 -> dress
    png = out / "train" / "trouser" / "00011.png"
    with Image.open(png) as im:
        assert im.mode == "L" and im.size == (28, 28)
        np.testing.assert_array_equal(
            np.asarray(im), read_idx(src / "train-images-idx3-ubyte.gz")[11]
        )
    assert (out / "val" / "dress" / "00003.png").is_file()
    assert len(list(out.rglob("*.png"))) == 17
    first = tree_bytes(out)
    write_fashion_mnist(src, out, workers=2)  # the process pool writes the same bytes
    assert tree_bytes(out) == first
    assert leftovers(tmp_path) == []


def test_write_fashion_mnist_limit(tmp_path):
    stats = write_fashion_mnist(
        fake_fashion_source(tmp_path / "src"), tmp_path / "raw", 3, workers=1
    )
    assert stats["counts"] == {"train": 3, "val": 3}
    assert len(list((tmp_path / "raw").rglob("*.png"))) == 6


def test_missing_fashion_source_names_package_and_param(tmp_path):
    with pytest.raises(SourceMissingError) as err:
        write_fashion_mnist(tmp_path / "nowhere", tmp_path / "raw")
    assert "dataset-fashion-mnist" in str(err.value)
    assert "data.vision.source" in str(err.value)
    assert not (tmp_path / "raw").exists()


@pytest.mark.skipif(
    not DEBIAN_DIR.is_dir(), reason=f"Debian dataset-fashion-mnist not installed ({DEBIAN_DIR})"
)
def test_real_debian_fashion_mnist(tmp_path):
    stats = write_fashion_mnist(DEBIAN_DIR, tmp_path / "raw", limit_per_split=40, workers=1)
    assert stats["counts"] == {"train": 40, "val": 40}
    images = read_idx(DEBIAN_DIR / "train-images-idx3-ubyte.gz")
    labels = read_idx(DEBIAN_DIR / "train-labels-idx1-ubyte.gz")
    assert images.shape == (60000, 28, 28) and labels.shape == (60000,)
    assert np.bincount(labels).tolist() == [6000] * 10
    with Image.open(tmp_path / "raw" / "train" / CLASSES[labels[7]] / "00007.png") as im:
        np.testing.assert_array_equal(np.asarray(im), images[7])


# ---------------------------------------------------------------- archives


def make_tar(path: Path, build) -> Path:
    with tarfile.open(path, "w") as tar:
        build(tar)
    return path


@pytest.mark.parametrize(
    "build, entry",
    [
        (lambda t: add_file(t, "../x", b"evil"), "../x"),
        (lambda t: add_file(t, "/abs", b"evil"), "/abs"),
        (lambda t: add_link(t, "link", "../../outside"), "link"),
        (lambda t: add_link(t, "link", "/etc/passwd"), "link"),
        (lambda t: add_link(t, "hard", "../outside", tarfile.LNKTYPE), "hard"),
        # lexically inside, but d is the root so d/.. is its parent
        (lambda t: (add_link(t, "d", "."), add_link(t, "a", "d/..")), "a"),
        (lambda t: add_link(t, "hard", "/etc/passwd", tarfile.LNKTYPE), "hard"),
    ],
)
def test_safe_extract_tar_refuses_unsafe_entries(tmp_path, build, entry):
    tar = make_tar(tmp_path / "bad.tar", build)
    dest = tmp_path / "box" / "out"
    with pytest.raises(DataError, match=f"'{entry}'"):
        safe_extract_tar(tar, dest)
    assert not dest.exists() and leftovers(dest.parent) == []
    assert not (tmp_path / "x").exists() and not (tmp_path / "outside").exists()


def test_safe_extract_tar_refuses_device(tmp_path):
    def build(tar):
        info = tarfile.TarInfo("dev")
        info.type = tarfile.CHRTYPE
        tar.addfile(info)

    with pytest.raises(DataError, match="'dev'"):
        safe_extract_tar(make_tar(tmp_path / "dev.tar", build), tmp_path / "out")


def test_safe_extract_tar_extracts_safe_tar(tmp_path):
    def build(tar):
        add_file(tar, "./a/b.txt", b"hello")
        add_link(tar, "a/link", "b.txt")
        add_file(tar, "c.txt", b"world")

    tar = make_tar(tmp_path / "ok.tar", build)
    names = safe_extract_tar(tar, tmp_path / "out")
    assert names == ["./a/b.txt", "a/link", "c.txt"]
    assert (tmp_path / "out" / "a" / "link").read_bytes() == b"hello"
    only = safe_extract_tar(tar, tmp_path / "out2", members=["c.txt"])
    assert only == ["c.txt"] and not (tmp_path / "out2" / "a").exists()
    with pytest.raises(DataError, match="missing.txt"):
        safe_extract_tar(tar, tmp_path / "out3", members=["missing.txt"])
    assert not (tmp_path / "out3").exists()


def test_verify_md5(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    assert md5sum(path) == "900150983cd24fb0d6963f7d28e17f72"
    verify_md5(path, "900150983cd24fb0d6963f7d28e17f72")
    verify_md5(path, None)
    with pytest.raises(DataError, match=r"f: expected 0+, got 9001"):
        verify_md5(path, "0" * 32)


# ---------------------------------------------------------------- ImageNet

WNIDS = ["n00000002", "n00000001"]  # ILSVRC2012_ID 1 and 2: the id order is not the WNID order
VAL_IDS = [2, 1, 1, 2]  # ground truth: 1-based ILSVRC2012_ID of val images 1..4


def meta_mat_bytes() -> bytes:
    """A meta.mat laid out as the real devkit's: `synsets`, a (n, 1) struct array."""
    fields = ["ILSVRC2012_ID", "WNID", "words", "gloss", "num_children", "children",
              "wordnet_height", "num_train_images"]  # fmt: skip
    synsets = np.zeros((3, 1), dtype=[(f, "O") for f in fields])
    rows = [
        (1, WNIDS[0], "thing two", "a leaf", 0, np.zeros((0, 0)), 0, 2),
        (2, WNIDS[1], "thing one", "a leaf", 0, np.zeros((0, 0)), 0, 2),
        (1001, "n00000099", "things", "an inner node", 2, np.array([1, 2]), 1, 0),
    ]
    for i, row in enumerate(rows):
        for f, v in zip(fields, row, strict=True):
            synsets[i, 0][f] = np.array([[v]]) if isinstance(v, int) else v
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"synsets": synsets})
    return buf.getvalue()


def fake_imagenet(root: Path) -> dict[str, Path]:
    root.mkdir()
    with tarfile.open(root / "train.tar", "w") as train:
        for c, wnid in enumerate(WNIDS):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode="w") as t:
                for j in range(2):
                    add_file(t, f"{wnid}_{j}.JPEG", jpeg_bytes(10 * c + j))
            add_file(train, f"{wnid}.tar", inner.getvalue())
    with tarfile.open(root / "val.tar", "w") as val:
        for i in range(1, len(VAL_IDS) + 1):
            add_file(val, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg_bytes(100 + i))
    with tarfile.open(root / "devkit.tar.gz", "w:gz") as devkit:
        add_file(devkit, DEVKIT_META, meta_mat_bytes())
        add_file(devkit, DEVKIT_GROUND_TRUTH, "".join(f"{i}\n" for i in VAL_IDS).encode())
        add_file(devkit, "ILSVRC2012_devkit_t12/readme.txt", b"devkit")
    return {
        "train_tar": root / "train.tar",
        "val_tar": root / "val.tar",
        "devkit_tar": root / "devkit.tar.gz",
    }


def md5s(archives: dict[str, Path]) -> dict[str, str]:
    return {key.removesuffix("_tar"): md5sum(path) for key, path in archives.items()}


def test_write_imagenet(tmp_path):
    archives = fake_imagenet(tmp_path / "src")
    out = tmp_path / "raw"
    stats = write_imagenet(**archives, out_dir=out, md5=md5s(archives))
    assert stats == {"classes": sorted(WNIDS), "counts": {"train": 4, "val": 4}}
    for wnid in WNIDS:
        assert sorted(p.name for p in (out / "train" / wnid).iterdir()) == [
            f"{wnid}_0.JPEG",
            f"{wnid}_1.JPEG",
        ]
    # val image i belongs to WNIDS[VAL_IDS[i - 1] - 1]
    assert sorted(p.name for p in (out / "val" / "n00000001").iterdir()) == [
        "ILSVRC2012_val_00000001.JPEG",
        "ILSVRC2012_val_00000004.JPEG",
    ]
    assert (out / "val" / "n00000001" / "ILSVRC2012_val_00000004.JPEG").read_bytes() == jpeg_bytes(
        104
    )
    assert sorted(p.name for p in (out / "val" / "n00000002").iterdir()) == [
        "ILSVRC2012_val_00000002.JPEG",
        "ILSVRC2012_val_00000003.JPEG",
    ]
    assert sorted(p.name for p in out.iterdir()) == ["train", "val"]
    # limit_classes keeps the first WNIDs in sorted order, train and val alike
    small = write_imagenet(
        **archives, out_dir=tmp_path / "small", md5=md5s(archives), limit_classes=1
    )
    assert small == {"classes": ["n00000001"], "counts": {"train": 2, "val": 2}}
    assert sorted(p.name for p in (tmp_path / "small" / "val").iterdir()) == ["n00000001"]


def test_write_imagenet_checksum_mismatch_leaves_nothing(tmp_path):
    archives = fake_imagenet(tmp_path / "src")
    wrong = {**md5s(archives), "val": "0" * 32}
    with pytest.raises(DataError, match=rf"val.tar: expected {'0' * 32}, got [0-9a-f]{{32}}"):
        write_imagenet(**archives, out_dir=tmp_path / "raw", md5=wrong)
    assert not (tmp_path / "raw").exists() and leftovers(tmp_path) == []
    # the official sums are the default, and the fakes do not match them
    with pytest.raises(DataError, match="1d675b47d978889d74fa0da5fadfb00e"):
        write_imagenet(**archives, out_dir=tmp_path / "raw")


def test_write_imagenet_missing_archive_names_path_and_param(tmp_path):
    archives = fake_imagenet(tmp_path / "src")
    archives["val_tar"] = tmp_path / "src" / "ILSVRC2012_img_val.tar"
    with pytest.raises(SourceMissingError) as err:
        write_imagenet(
            **archives, out_dir=tmp_path / "raw", md5=dict.fromkeys(["train", "val", "devkit"])
        )
    assert str(archives["val_tar"]) in str(err.value)
    assert "data.vision.imagenet_dir" in str(err.value)


def test_write_imagenet_refuses_unsafe_inner_tar(tmp_path):
    archives = fake_imagenet(tmp_path / "src")
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w") as t:
        add_file(t, "../../escape.JPEG", b"evil")
    with tarfile.open(archives["train_tar"], "a") as train:
        add_file(train, "n00000001.tar", inner.getvalue())  # a later entry for a class
    with pytest.raises(DataError, match="escape.JPEG"):
        write_imagenet(**archives, out_dir=tmp_path / "raw", md5=md5s(archives))
    assert not (tmp_path / "raw").exists() and leftovers(tmp_path) == []
    assert not list(tmp_path.rglob("escape.JPEG"))


# ---------------------------------------------------------------- image folder -> shards


def image_folder(root: Path) -> Path:
    """train: cat 3 RGB images of mixed sizes, dog 2 + 1 truncated PNG; val: cat 1, dog 1."""
    rng = np.random.default_rng(1)
    sizes = {"train/cat": [(10, 14), (14, 10), (8, 8)], "train/dog": [(9, 9), (16, 12)],
             "val/cat": [(8, 12)], "val/dog": [(12, 8)]}  # fmt: skip
    for folder, shapes in sizes.items():
        (root / folder).mkdir(parents=True)
        for i, (h, w) in enumerate(shapes):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            (root / folder / f"{i:02d}.png").write_bytes(png_bytes(pixels))
    good = png_bytes(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    (root / "train" / "dog" / "05.png").write_bytes(good[: len(good) // 2])
    (root / "train" / "dog" / "notes.txt").write_text("not an image")
    return root


def test_prepare_image_folder_skips_corrupt(tmp_path, caplog):
    src = image_folder(tmp_path / "src")
    out = tmp_path / "prep"
    meta = prepare_image_folder(src, out, image_size=8, channels=3, shard_size=2, workers=1)
    assert meta.classes == ["cat", "dog"]
    assert meta.counts == {"train": 5, "val": 2}
    assert meta.shards == {"train": 3, "val": 1}
    assert meta.skipped == {"count": 1, "files": ["train/dog/05.png"]}
    assert "skipped 1 unreadable" in caplog.text
    assert read_meta(out, VisionMeta) == meta
    split = load_image_split(out, "train")
    assert split.images.shape == (5, 8, 8, 3) and split.images.dtype == np.uint8
    np.testing.assert_array_equal(split.labels, [0, 0, 0, 1, 1])
    expected = np.stack(
        [
            load_image(p, 8, 3)
            for c in ("cat", "dog")
            for p in sorted((src / "train" / c).glob("0[0-4].png"))
        ]
    )
    np.testing.assert_array_equal(split.images, expected)
    pixels = expected.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(meta.mean, pixels.mean(0), atol=1e-12)
    np.testing.assert_allclose(meta.std, pixels.std(0), atol=1e-12)
    np.testing.assert_array_equal(load_image_split(out, "val").labels, [0, 1])
    # the process pool writes the same bytes
    prepare_image_folder(src, tmp_path / "prep2", image_size=8, channels=3, shard_size=2, workers=2)
    assert tree_bytes(tmp_path / "prep2") == tree_bytes(out)


def test_prepare_image_folder_fail_on_corrupt(tmp_path):
    src = image_folder(tmp_path / "src")
    with pytest.raises(DataError, match=r"train/dog/05\.png"):
        prepare_image_folder(
            src, tmp_path / "prep", image_size=8, channels=3, on_corrupt="fail", workers=1
        )
    assert not (tmp_path / "prep").exists() and leftovers(tmp_path) == []


def test_load_image_resize_and_grey(tmp_path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, 6:34] = 255  # a white center band survives the center crop of the wider image
    path = tmp_path / "wide.png"
    path.write_bytes(png_bytes(pixels))
    grey = load_image(path, 10, 1)
    assert grey.shape == (10, 10, 1)
    assert grey.min() >= 250


# ---------------------------------------------------------------- batches and subsets


def numbered_split(n: int = 10, size: int = 4, channels: int = 3) -> ImageSplit:
    """Image i has every pixel = i, so a batch tells which images it holds."""
    images = np.broadcast_to(
        np.arange(n, dtype=np.uint8)[:, None, None, None], (n, size, size, channels)
    ).copy()
    return ImageSplit(images, np.arange(n, dtype=np.int64) % 3, ["a", "b", "c"])


def batch_ids(batch) -> list[int]:
    """Invert the normalization of `numbered_split` batches (mean 0.5, std 0.25)."""
    return ((batch.images[:, 0, 0, 0] * 0.25 + 0.5) * 255).round().long().tolist()


def test_image_batches_shapes_and_normalization():
    split = numbered_split()
    batches = list(ImageBatches(split, 4, mean=[0.5] * 3, std=[0.25] * 3, shuffle=False))
    assert [b.images.shape for b in batches] == [(4, 3, 4, 4), (4, 3, 4, 4), (2, 3, 4, 4)]
    assert batches[0].images.dtype == torch.float32 and batches[0].labels.dtype == torch.int64
    assert batches[0].images.is_contiguous()
    expected = (torch.arange(4.0) / 255 - 0.5) / 0.25
    torch.testing.assert_close(batches[0].images[:, 1, 2, 3], expected)
    torch.testing.assert_close(batches[2].labels, torch.tensor([8 % 3, 9 % 3]))


def test_image_batches_normalize_prepared_data_to_zero_mean_unit_std(tmp_path):
    out = tmp_path / "prep"
    meta = prepare_image_folder(
        image_folder(tmp_path / "src"), out, image_size=8, channels=3, workers=1
    )
    loader = ImageBatches(load_image_split(out, "train"), 2, meta.mean, meta.std, generator=0)
    images = torch.cat([b.images for b in loader])  # (N, C, H, W)
    per_channel = images.transpose(0, 1).reshape(3, -1)
    torch.testing.assert_close(per_channel.mean(1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(per_channel.std(1, unbiased=False), torch.ones(3), atol=1e-5, rtol=0)


def test_image_batches_deterministic_shuffle_and_subset():
    split = numbered_split(n=50)

    def epochs(seed, **kw):
        loader = ImageBatches(
            split, 8, [0.5] * 3, [0.25] * 3, generator=torch.Generator().manual_seed(seed), **kw
        )
        return [[batch_ids(b) for b in loader] for _ in range(2)]

    first = epochs(0)
    assert first == epochs(0)
    assert first != epochs(1)
    assert first[0] != first[1]  # a new order each pass
    assert sorted(i for b in first[0] for i in b) == list(range(50))
    dropped = epochs(0, drop_last=True)[0]
    assert len(dropped) == 6 and all(len(b) == 8 for b in dropped)
    subset = np.array([3, 7, 11, 40])
    seen = [i for b in epochs(2, indices=subset)[0] for i in b]
    assert sorted(seen) == subset.tolist()
    assert [i for b in epochs(2, shuffle=False)[0] for i in b] == list(range(50))


def test_stratified_subset_counts_and_seed():
    labels = np.repeat([0, 1, 2], [100, 5, 1])
    rng = np.random.default_rng(3)
    labels = labels[rng.permutation(len(labels))]
    subset = stratified_subset(labels, 0.3, seed=0)
    assert np.bincount(labels[subset]).tolist() == [30, 2, 1]  # round(1.5) -> 2, at least 1
    assert np.all(np.diff(subset) > 0)
    np.testing.assert_array_equal(subset, stratified_subset(labels, 0.3, seed=0))
    assert not np.array_equal(subset, stratified_subset(labels, 0.3, seed=1))
    assert len(stratified_subset(labels, 1.0, seed=0)) == len(labels)
    with pytest.raises(ValueError):
        stratified_subset(labels, 0.0, seed=0)


def test_shard_count_mismatch_raises(tmp_path):
    out = tmp_path / "prep"
    prepare_image_folder(image_folder(tmp_path / "src"), out, image_size=8, channels=3, workers=1)
    labels = out / "train" / "labels-00000.npy"
    np.save(labels, np.load(labels)[:-1])
    with pytest.raises(DataError, match="labels-00000.npy"):
        load_image_split(out, "train")
    meta = json.loads((out / "meta.json").read_text())
    del meta["std"]
    (out / "meta.json").write_text(json.dumps({**meta, "colour": 1}))
    with pytest.raises(DataError, match=r"unknown keys \['colour'\], missing keys \['std'\]"):
        read_meta(out, VisionMeta)
    os.remove(out / "meta.json")
    with pytest.raises(DataError, match="meta.json"):
        read_meta(out, VisionMeta)

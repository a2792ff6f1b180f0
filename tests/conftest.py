"""Shared fixtures: small real image, speech and text sets, prepared once per session (the
plain helpers are in tests/helpers.py)."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from d2v.data.wordnet import wordnet_examples
from tests.helpers import fake_vader_sdist, tiny_params

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.tobytes(), mtime=0))


def _digits_as_fashion_source(root: Path) -> Path:
    """Pip-only fallback (shared/DATA.md): scikit-learn's bundled 8x8 digits, upscaled to 28x28
    and written in the Debian package's IDX layout, so the same loader reads them."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.stack(
        [
            np.asarray(
                Image.fromarray((img * 255 / 16).astype(np.uint8)).resize((28, 28), Image.BILINEAR)
            )
            for img in digits.images
        ]
    )
    labels = digits.target.astype(np.uint8)
    root.mkdir(parents=True, exist_ok=True)
    for prefix, sl in (("train", slice(0, 1500)), ("t10k", slice(1500, None))):
        _write_idx(root / f"{prefix}-images-idx3-ubyte.gz", images[sl])
        _write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels[sl])
    return root


@pytest.fixture(scope="session")
def fashion_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Fashion-MNIST from Debian where installed, else the digits fallback in the same layout."""
    if (FASHION_MNIST / "train-images-idx3-ubyte.gz").exists():
        return FASHION_MNIST
    return _digits_as_fashion_source(tmp_path_factory.mktemp("digits"))


@pytest.fixture(scope="session")
def prepared_vision(tmp_path_factory: pytest.TempPathFactory, fashion_source: Path) -> Path:
    """A prepared (sharded) split of 1500 train / 300 val real images."""
    from d2v.data.fashion_mnist import write_fashion_mnist
    from d2v.data.image_folder import prepare_image_folder

    root = tmp_path_factory.mktemp("vision")
    write_fashion_mnist(fashion_source, root / "raw", limit_per_split=1500)
    prepare_image_folder(root / "raw", root / "prepared", image_size=28, channels=1)
    return root / "prepared"


@pytest.fixture(scope="session")
def prepared_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small flite corpus (2 voices x 2 pitches x 2 speeds x 8 utterances) + the real clips,
    prepared. Skipped where Debian's flite or WordNet is missing."""

    from d2v.data.audio_prepare import prepare_speech
    from d2v.data.flite_corpus import write_flite_corpus, write_real_clips
    from d2v.data.speech import speech_splits
    from d2v.data.wordnet import WORDNET_DIR

    if shutil.which("flite") is None or not Path(WORDNET_DIR).is_dir():
        pytest.skip("needs Debian flite and wordnet-base")
    root = tmp_path_factory.mktemp("speech")
    write_flite_corpus(
        root / "raw", wordnet_examples(), ["kal16", "slt"], [100.0, 140.0], [0.9, 1.1], 8, 1, 1
    )
    write_real_clips("/usr/share/pocketsphinx/test/data/librivox", root / "raw")
    cfg = tiny_params().data.speech
    splits, eval_splits, dev = speech_splits(cfg)
    prepare_speech(root / "raw", root / "prepared", splits, eval_splits=eval_splits, dev_split=dev)
    return root / "prepared"


@pytest.fixture(scope="session")
def bibles() -> dict:
    """WEB and KJV verses exported with diatheke (once per session: ~10 s)."""

    from d2v.data.bible import export_bible

    if shutil.which("diatheke") is None:
        pytest.skip("needs Debian diatheke and sword-text-web/kjv")
    return {m: export_bible(m) for m in ("WEB", "KJV")}


@pytest.fixture(scope="session")
def prepared_text(tmp_path_factory: pytest.TempPathFactory, bibles: dict) -> Path:
    """The embedded text data, prepared with a small BPE: the Bible + WordNet corpus and the four
    GLUE-format stand-ins (vaderSentiment's snippets from a local sdist build of the test)."""
    from d2v.data.glue_standins import write_glue_standins
    from d2v.data.text_corpus import write_embedded_corpus
    from d2v.data.text_prepare import prepare_text
    from d2v.data.wordnet import WORDNET_DIR

    root = tmp_path_factory.mktemp("text")
    write_embedded_corpus(root / "raw", ("WEB", "KJV"), WORDNET_DIR, bibles)
    fake_vader_sdist(root / "vader")
    write_glue_standins(
        root / "raw",
        root / "vader",
        bibles=bibles,
        dev_size=200,
        mrpc_train_size=600,
        cola_train_size=600,
        vader_md5=None,
    )
    prepare_text(
        root / "raw",
        root / "prepared",
        vocab_size=2000,
        block_size=64,
        max_seq_len=64,
        tasks=["sst2", "stsb", "mrpc", "cola"],
        limit_docs=3000,
    )
    return root / "prepared"

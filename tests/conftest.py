"""Shared fixtures: params composed from conf/ with tiny overrides, and a small real image set."""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import struct
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from d2v.config import Params, load_params
from d2v.data.glue_standins import VADER_INNER, VADER_MOVIES, VADER_SDIST
from d2v.data.wordnet import wordnet_examples
from d2v.params_io import compose

REPO = Path(__file__).resolve().parents[1]
FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
LAUNCHER_VARS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
    "GROUP_RANK",
    "ROLE_RANK",
    "TORCHELASTIC_RUN_ID",
    "MLFLOW_TRACKING_URI",  # mlflow.set_tracking_uri in a test writes it; children use params
)

# Tiny, fast settings on top of the laptop profile (lightning-hydra-template style).
TINY = [
    "model=micro",
    "pretrain.vision.v1.optim.steps=30",
    "pretrain.vision.v1.optim.warmup_steps=5",
    "pretrain.vision.v1.optim.batch_size=32",
    "pretrain.vision.v2.optim.steps=30",
    "pretrain.vision.v2.optim.warmup_steps=5",
    "pretrain.vision.v2.optim.batch_size=16",
    "pretrain.vision.v2.clone_batch=4",
    "pretrain.vision.checkpoint_every=10",
    "pretrain.vision.log_every=5",
    "pretrain.vision.collapse.check_after=1000",
]


# tests written against data2vec (v1) pin it: the laptop default is data2vec 2.0 for vision
# and speech (conf/config.yaml)
V1 = ("pretrain.vision.method=v1", "pretrain.speech.method=v1", "pretrain.speech.frontend=waveform")


def tiny_params(*overrides: str) -> Params:
    return load_params(compose(REPO / "conf", [*TINY, *overrides]))


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child process, without this process's rank variables (in-process
    DeepSpeed tests set them; the child sets up its own process group) or tracking URI."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env.update(DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1", **extra)
    return env


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
    import shutil

    from d2v.data.audio_prepare import prepare_speech
    from d2v.data.flite_corpus import write_flite_corpus, write_real_clips
    from d2v.data.speech import speech_splits
    from d2v.data.wordnet import WORDNET_DIR, wordnet_examples

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
    import shutil

    from d2v.data.bible import export_bible

    if shutil.which("diatheke") is None:
        pytest.skip("needs Debian diatheke and sword-text-web/kjv")
    return {m: export_bible(m) for m in ("WEB", "KJV")}


def fake_vader_sdist(cache: Path, n: int = 600) -> Path:
    """A vaderSentiment sdist with the real inner layout and `n` WordNet sentences as snippets,
    plus one non-UTF-8 line and one out-of-range rating (both must be skipped)."""
    rng = np.random.default_rng(0)
    sentences = wordnet_examples()[:n]
    ratings = rng.uniform(-4, 4, n)
    lines = [f"{i}\t{r:.4f}\t{s}" for i, (s, r) in enumerate(zip(sentences, ratings, strict=True))]
    raw = "\r\n".join(lines).encode() + b"\r\n9998\t1.0\tbad \xff bytes\r\n9999\t7.5\ttoo high"
    inner = io.BytesIO()
    with tarfile.open(fileobj=inner, mode="w:gz") as tar:
        info = tarfile.TarInfo(VADER_MOVIES)
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    outer = cache / VADER_SDIST
    cache.mkdir(parents=True, exist_ok=True)
    with tarfile.open(outer, "w:gz") as tar:
        info = tarfile.TarInfo(f"vaderSentiment-3.3.2/{VADER_INNER}")
        info.size = len(inner.getvalue())
        tar.addfile(info, io.BytesIO(inner.getvalue()))
    return outer


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


def image_sizes(html: Path, tmp_path: Path, alt_prefix: str = "") -> list[tuple[int, int]]:
    """The natural sizes of a report page's images (those whose alt text starts with
    `alt_prefix`) once headless Chromium has loaded it; skips where Chromium is missing."""
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("chromium not installed (Debian package `chromium`)")
    script = (
        "<pre id=sizes></pre><script>window.addEventListener('load',()=>{"
        "document.getElementById('sizes').textContent=[...document.images]"
        f".filter(i=>i.alt.startsWith('{alt_prefix}'))"
        ".map(i=>i.naturalWidth+'x'+i.naturalHeight).join(' ')});</script></body>"
    )
    page = tmp_path / "probe.html"
    page.write_text(html.read_text().replace("</body>", script))
    dom = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=60,
    ).stdout  # fmt: skip
    sizes = re.search(r'<pre id="sizes">([^<]*)</pre>', dom)
    assert sizes, dom[-500:]
    return [tuple(map(int, s.split("x"))) for s in sizes.group(1).split()]

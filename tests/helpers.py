"""Helpers the tests share (plain functions and constants; the fixtures are in conftest.py)."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from d2v.atomic import atomic_path
from d2v.config import Params, load_params
from d2v.data.archive import DEFAULT_LIMITS, ExtractLimits, extract_tar_fileobj
from d2v.data.glue_standins import VADER_INNER, VADER_MOVIES, VADER_SDIST
from d2v.data.wordnet import wordnet_examples
from d2v.params_io import compose

REPO = Path(__file__).resolve().parents[1]
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


# tests written against data2vec (v1) with the waveform CNN pin both: the laptop default is
# data2vec 2.0 for vision and the log-mel front end for speech (conf/config.yaml)
V1 = ("pretrain.vision.method=v1", "pretrain.speech.method=v1", "pretrain.speech.frontend=waveform")


def tiny_params(*overrides: str) -> Params:
    return load_params(compose(REPO / "conf", [*TINY, *overrides]))


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment for a child process, without this process's rank variables (in-process
    DeepSpeed tests set them; the child sets up its own process group) or tracking URI."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env.update(DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1", **extra)
    return env


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


def safe_extract_tar(
    tar_path: str | os.PathLike,
    dest: str | os.PathLike,
    members: list[str] | None = None,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> list[str]:
    """The tar at `tar_path` extracted into `dest` as the ImageNet and LibriSpeech writers do it
    (`extract_tar_fileobj` inside an atomic output): `dest` appears only when complete."""
    with open(tar_path, "rb") as f, atomic_path(dest) as tmp:
        return extract_tar_fileobj(f, tmp, members, str(tar_path), limits=limits)

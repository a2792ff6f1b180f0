"""The pretrain stage as users run it (`d2v pretrain vision` processes): several ranks through
torchrun give the same losses as one rank, ZeRO-3 works, and a killed run resumes to the same
state as an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from d2v.config import to_dict
from tests.helpers import V1, subprocess_env, tiny_params

pytestmark = pytest.mark.slow


def workdir(tmp: Path, prepared: Path, *overrides: str) -> Path:
    """A working directory with params.yaml and the prepared data where the stage expects it."""
    tmp.mkdir(parents=True, exist_ok=True)
    params = tiny_params(f"tracking.uri=sqlite:///{tmp}/mlruns.db", *V1, *overrides)
    (tmp / "params.yaml").write_text(yaml.safe_dump(to_dict(params)))
    (tmp / "data" / "prepared").mkdir(parents=True)
    (tmp / "data" / "prepared" / "vision").symlink_to(prepared)
    return tmp


def start(cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "d2v.cli", "pretrain", "vision"],
        cwd=cwd,
        env=subprocess_env(OMP_NUM_THREADS="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def finish(proc: subprocess.Popen) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]


def history(cwd: Path) -> list[dict]:
    return json.loads((cwd / "models/vision/pretrained/history.json").read_text())


def model(cwd: Path) -> dict:
    return torch.load(cwd / "models/vision/pretrained/encoder.pt", weights_only=False)


# data2vec 2.0 at a tiny budget: 16 images x 4 masked copies per step. The decoder's noise in
# the masked slots is, like dropout, drawn per rank from the step's seed, so runs on different
# rank counts compare without it (resume is exact with it).
V2 = (
    "pretrain.vision.method=v2",
    "pretrain.vision.v2.optim.batch_size=16",
    "pretrain.vision.v2.optim.warmup_steps=2",
    "pretrain.vision.v2.clone_batch=4",
)
NO_NOISE = "pretrain.vision.v2.decoder.noise_std=0.0"


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory: pytest.TempPathFactory, prepared_vision: Path) -> Path:
    cwd = workdir(
        tmp_path_factory.mktemp("one_rank"), prepared_vision, "pretrain.vision.v1.optim.steps=10"
    )
    finish(start(cwd))
    return cwd


@pytest.fixture(scope="module")
def one_rank_v2(tmp_path_factory: pytest.TempPathFactory, prepared_vision: Path) -> Path:
    cwd = workdir(
        tmp_path_factory.mktemp("one_rank_v2"),
        prepared_vision,
        *V2,
        NO_NOISE,
        "pretrain.vision.v2.optim.steps=10",
    )
    finish(start(cwd))
    return cwd


def assert_same_run(ref: Path, got: Path, ranks: int) -> None:
    a, b = history(ref), history(got)
    assert [h["step"] for h in b] == [h["step"] for h in a]
    for x, y in zip(a, b, strict=True):
        assert y["loss"] == pytest.approx(x["loss"], rel=2e-3), (a, b)
    summary = json.loads((got / "models/vision/pretrained/summary.json").read_text())
    assert summary["world_size"] == ranks
    # the gathered encoder and the EMA teacher match too
    for part in ("encoder", "teacher"):
        for k, v in model(ref)[part].items():
            torch.testing.assert_close(model(got)[part][k], v, rtol=1e-2, atol=2e-4)


@pytest.mark.parametrize("ranks, zero", [(2, 2), (1, 3), (2, 3)])
def test_ranks_and_zero_stages_match_one_rank(
    one_rank: Path, prepared_vision: Path, tmp_path: Path, ranks: int, zero: int
) -> None:
    cwd = workdir(
        tmp_path,
        prepared_vision,
        "pretrain.vision.v1.optim.steps=10",
        f"deepspeed.num_procs={ranks}",
        f"deepspeed.zero_stage={zero}",
    )
    finish(start(cwd))
    assert_same_run(one_rank, cwd, ranks)


def test_v2_two_ranks_zero3_match_one_rank(
    one_rank_v2: Path, prepared_vision: Path, tmp_path: Path
) -> None:
    cwd = workdir(
        tmp_path,
        prepared_vision,
        *V2,
        NO_NOISE,
        "pretrain.vision.v2.optim.steps=10",
        "deepspeed.num_procs=2",
        "deepspeed.zero_stage=3",
    )
    finish(start(cwd))
    assert_same_run(one_rank_v2, cwd, 2)
    assert json.loads((cwd / "models/vision/pretrained/summary.json").read_text())["method"] == "v2"


@pytest.mark.parametrize("method", ["v1", "v2"])
def test_killed_run_resumes_to_the_uninterrupted_state(
    prepared_vision: Path, tmp_path: Path, method: str
) -> None:
    steps = (
        f"pretrain.vision.{method}.optim.steps=60",
        "pretrain.vision.checkpoint_every=10",
        *(V2 if method == "v2" else ()),
    )
    straight = workdir(tmp_path / "straight", prepared_vision, *steps)
    finish(start(straight))

    killed = workdir(tmp_path / "killed", prepared_vision, *steps)
    proc = start(killed)
    deadline = time.time() + 300
    while not list((killed / "checkpoints").glob("vision/*/step00000020")):
        assert proc.poll() is None, proc.stdout.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "models/vision/pretrained").exists()  # nothing half-written

    finish(start(killed))
    summary = json.loads((killed / "models/vision/pretrained/summary.json").read_text())
    assert summary["resumed_from"] in (10, 20, 30, 40, 50)
    a, b = model(straight), model(killed)
    for part in ("encoder", "teacher"):
        for k, v in a[part].items():
            torch.testing.assert_close(b[part][k], v, rtol=1e-5, atol=1e-6)
    resumed = {h["step"]: h["loss"] for h in history(killed)}
    for h in history(straight):
        if h["step"] in resumed:
            assert resumed[h["step"]] == pytest.approx(h["loss"], rel=1e-5)


def test_a_lone_cpu_process_neither_builds_nor_loads_the_shm_comm_op(tmp_path: Path) -> None:
    """The shared-memory all-reduce serves ranks on one host: a world of one skips it (its first
    build in a new venv took 35 s), while a launcher's several ranks keep it (the tests above)."""
    code = (
        "from d2v.distributed import init_distributed; info = init_distributed();"
        "from deepspeed.comm import comm; print(info.world_size, comm.cdb.shm_comm_op is None)"
    )
    env = subprocess_env(TORCH_EXTENSIONS_DIR=str(tmp_path / "ext"))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["1", "True"]
    assert not any((tmp_path / "ext").rglob("*.so"))

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
from tests.conftest import subprocess_env, tiny_params

pytestmark = pytest.mark.slow


def workdir(tmp: Path, prepared: Path, *overrides: str) -> Path:
    """A working directory with params.yaml and the prepared data where the stage expects it."""
    tmp.mkdir(parents=True, exist_ok=True)
    params = tiny_params(f"tracking.uri=sqlite:///{tmp}/mlruns.db", *overrides)
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


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory: pytest.TempPathFactory, prepared_vision: Path) -> Path:
    cwd = workdir(
        tmp_path_factory.mktemp("one_rank"), prepared_vision, "pretrain.vision.optim.steps=10"
    )
    finish(start(cwd))
    return cwd


@pytest.mark.parametrize("ranks, zero", [(2, 2), (1, 3), (2, 3)])
def test_ranks_and_zero_stages_match_one_rank(
    one_rank: Path, prepared_vision: Path, tmp_path: Path, ranks: int, zero: int
) -> None:
    cwd = workdir(
        tmp_path,
        prepared_vision,
        "pretrain.vision.optim.steps=10",
        f"deepspeed.num_procs={ranks}",
        f"deepspeed.zero_stage={zero}",
    )
    finish(start(cwd))
    ref, got = history(one_rank), history(cwd)
    assert [h["step"] for h in got] == [h["step"] for h in ref]
    for a, b in zip(ref, got, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-3), (ref, got)
    assert (
        json.loads((cwd / "models/vision/pretrained/summary.json").read_text())["world_size"]
        == ranks
    )
    # the gathered encoder and the EMA teacher match too
    for part in ("encoder", "teacher"):
        for k, v in model(one_rank)[part].items():
            torch.testing.assert_close(model(cwd)[part][k], v, rtol=1e-2, atol=2e-4)


def test_killed_run_resumes_to_the_uninterrupted_state(
    prepared_vision: Path, tmp_path: Path
) -> None:
    steps = ("pretrain.vision.optim.steps=60", "pretrain.vision.checkpoint_every=10")
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

"""Optuna studies: exact trial counts with two workers on a real PostgreSQL server, resuming an
interrupted study, collapsed and failing trials, MLflow child runs one to one with trials, and a
proxy that ranks a pretrained encoder above a random one."""

from __future__ import annotations

import ast
import glob
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import optuna
import pytest
import torch
import yaml

from d2v.config import Modality, to_dict
from d2v.distributed import free_port, init_distributed
from d2v.modalities import downstream_task, pretrain_spec
from d2v.objective import probe_value
from d2v.train import pretrain
from tests.helpers import REPO, V1, subprocess_env, tiny_params

BUDGET = (
    'sweep.vision.overrides=["pretrain.vision.v1.optim.steps=10",'
    '"pretrain.vision.v1.optim.warmup_steps=2","pretrain.vision.v1.optim.batch_size=32",'
    '"pretrain.vision.checkpoint_every=1000"]'
)
FAST = [
    BUDGET,
    "sweep.vision.report_every=5",
    "sweep.vision.probe_label_fraction=0.2",
    "finetune.imagenet.probe.epochs=20",
]


def workdir(tmp: Path, prepared: Path, *overrides: str) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    params = tiny_params(f"tracking.uri=sqlite:///{tmp}/mlruns.db", *V1, *FAST, *overrides)
    (tmp / "params.yaml").write_text(yaml.safe_dump(to_dict(params)))
    (tmp / "data" / "prepared").mkdir(parents=True)
    (tmp / "data" / "prepared" / "vision").symlink_to(prepared)
    return tmp


def sweep_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "d2v.cli", "sweep", "vision", *args]


def run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run(
        sweep_cmd(*args),
        cwd=cwd,
        env=subprocess_env(OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return r


def summary(cwd: Path) -> dict:
    return json.loads((cwd / "metrics/sweep/vision.json").read_text())


def assert_mlflow_matches_study(cwd: Path, result: dict) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{cwd}/mlruns.db")
    runs = mlflow.search_runs(experiment_names=["d2v"])
    parent = runs[runs["tags.mlflow.runName"] == "sweep/vision"]
    assert len(parent) == 1
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]]
    assert sorted(children["tags.trial_number"].astype(int)) == [
        t["number"] for t in result["trials"]
    ]
    for t in result["trials"]:
        row = children[children["tags.trial_number"] == str(t["number"])].iloc[0]
        assert row["tags.state"] == t["state"]
        for k, v in t["params"].items():
            assert row[f"params.{k}"] == v


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL server on 127.0.0.1 (Debian `postgresql`)."""
    bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    if not bins:
        pytest.skip(
            "PostgreSQL is not installed (Debian package postgresql; make test installs it)"
        )
    bin_dir = Path(bins[-1])
    # not under pytest's tmp dir: that is private to root, and the server runs as postgres
    root = Path(tempfile.mkdtemp(prefix="d2v-pg-"))
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
        check=True,
        capture_output=True,
    )
    port = free_port()
    subprocess.run(
        [
            *as_user,
            str(bin_dir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
        capture_output=True,
    )
    shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_two_workers_on_postgres_finish_exactly_n_trials(
    postgres: str, prepared_vision: Path, tmp_path: Path
) -> None:
    cwd = workdir(tmp_path, prepared_vision, "sweep.vision.n_trials=5")
    run(cwd, "--workers", "2", "--storage", postgres)
    result = summary(cwd)
    assert result["storage_kind"] == "postgresql"
    study = optuna.load_study(study_name=result["study_name"], storage=postgres)
    trials = study.get_trials()
    assert len(trials) == 5 and sorted(t.number for t in trials) == [0, 1, 2, 3, 4]
    assert all(t.state.is_finished() for t in trials)
    workers = {t.user_attrs["mlflow_run_id"] for t in trials}
    assert len(workers) == 5  # one MLflow run per trial, none run twice
    assert sum(result["states"][s] for s in ("COMPLETE", "PRUNED", "FAIL")) == 5
    assert_mlflow_matches_study(cwd, result)
    # a re-run finds the study complete and adds nothing
    run(cwd, "--storage", postgres)
    assert len(optuna.load_study(study_name=result["study_name"], storage=postgres).trials) == 5


@pytest.mark.slow
def test_interrupted_study_resumes_to_exactly_n_trials(
    prepared_vision: Path, tmp_path: Path
) -> None:
    cwd = workdir(
        tmp_path,
        prepared_vision,
        "sweep.vision.n_trials=4",
        "sweep.vision.heartbeat_s=1",
        "sweep.vision.grace_s=3",
    )
    storage = f"sqlite:///{cwd}/data/sweep.db"
    proc = subprocess.Popen(
        sweep_cmd(),
        cwd=cwd,
        env=subprocess_env(OMP_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )

    def finished() -> int:
        try:
            names = optuna.get_all_study_names(storage)
            trials = optuna.load_study(study_name=names[0], storage=storage).trials if names else []
        except Exception:  # the database may not exist yet
            return 0
        return sum(t.state.is_finished() for t in trials)

    deadline = time.time() + 600
    while finished() < 1:
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert finished() < 4
    time.sleep(4)  # past the grace period: the killed worker's trial is stale
    run(cwd)
    result = summary(cwd)
    trials = result["trials"]
    assert len(trials) == 4 and [t["number"] for t in trials] == [0, 1, 2, 3]
    assert sum(result["states"][s] for s in ("COMPLETE", "PRUNED", "FAIL")) == 4
    assert result["states"]["RUNNING"] == 0 and result["states"]["WAITING"] == 0


@pytest.mark.slow
def test_collapsed_trials_are_pruned_and_tagged(prepared_vision: Path, tmp_path: Path) -> None:
    collapse = (
        'sweep.vision.overrides=["pretrain.vision.v1.optim.steps=10",'
        '"pretrain.vision.v1.optim.batch_size=32","pretrain.vision.v1.optim.warmup_steps=2",'
        '"pretrain.vision.collapse.min_target_std=100","pretrain.vision.collapse.check_after=0",'
        '"pretrain.vision.collapse.patience=1"]'
    )
    cwd = workdir(tmp_path, prepared_vision, "sweep.vision.n_trials=2", collapse)
    run(cwd)
    result = summary(cwd)
    assert result["states"]["PRUNED"] == 2 and result["best"] is None
    assert all(t["collapsed"] for t in result["trials"])
    mlflow.set_tracking_uri(f"sqlite:///{cwd}/mlruns.db")
    runs = mlflow.search_runs(experiment_names=["d2v"], filter_string="tags.stage = 'sweep'")
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(children) == 2 and (children["tags.collapsed"] == "true").all()
    assert_mlflow_matches_study(cwd, result)


@pytest.mark.slow
def test_failing_trials_do_not_stop_the_study(prepared_vision: Path, tmp_path: Path) -> None:
    # lr in [1e30, 1e31] is a valid param, but every sampled trial's loss overflows within its
    # first steps (NonFiniteLossError): the trial fails, the baseline trial (the run's own lr)
    # completes, and the study still ends at n_trials.
    cwd = workdir(
        tmp_path,
        prepared_vision,
        "sweep.vision.n_trials=3",
        "+sweep.vision.space.lr={param:pretrain.vision.v1.optim.lr,scale:log,low:1.0e30,high:1.0e31}",
    )
    run(cwd)
    result = summary(cwd)
    assert result["states"] == {"COMPLETE": 1, "FAIL": 2, "PRUNED": 0, "RUNNING": 0, "WAITING": 0}
    failed = [t for t in result["trials"] if t["state"] == "FAIL"]
    assert all("NonFiniteLossError" in t["error"] for t in failed)
    assert result["baseline"]["state"] == "COMPLETE" and result["best"]["number"] == 0
    assert_mlflow_matches_study(cwd, result)
    # a readable name with the fingerprint as its suffix, and a named objective
    study = optuna.load_study(
        study_name=result["study_name"], storage=f"sqlite:///{cwd}/data/sweep.db"
    )
    assert re.fullmatch(r"vision-v1-micro-[0-9a-f]{8}", result["study_name"])
    assert result["study_name"].endswith(study.user_attrs["fingerprint"][:8])
    assert study.metric_names == ["imagenet probe top1"]
    runs = mlflow.search_runs(experiment_names=["d2v"], filter_string="tags.state = 'FAIL'")
    assert list(runs["status"]) == ["FAILED", "FAILED"]  # ended as the trial did


def test_a_space_reaching_outside_its_params_range_is_refused_before_any_trial(
    prepared_vision: Path, tmp_path: Path
) -> None:
    # K in [5, 6] exceeds the micro model's depth 4: every sampled trial would fail validation
    cwd = workdir(
        tmp_path,
        prepared_vision,
        "sweep.vision.space.top_k.low=5",
        "sweep.vision.space.top_k.high=6",
    )
    r = subprocess.run(
        sweep_cmd(), cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 2, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert "invalid param sweep.vision.space.top_k = [5.0, 6.0]" in last
    assert "pretrain.vision.v1.targets.top_k's [1, depth=4] (5 is refused)" in last
    assert not (cwd / "data" / "sweep.db").exists() and not (cwd / "mlruns.db").exists()


def test_proxy_ranks_a_pretrained_encoder_above_a_random_one(prepared_vision: Path) -> None:
    params = tiny_params(
        *V1,
        "pretrain.vision.v1.optim.steps=100",
        "pretrain.vision.v1.optim.lr=0.002",
        "finetune.imagenet.probe.epochs=50",
    )
    info = init_distributed()
    spec = pretrain_spec(params, Modality.vision, prepared_vision)
    model, _, _ = pretrain(
        spec,
        params.deepspeed,
        info,
        0,
        prepared_vision.parent / "ckpt-proxy",
    )
    task = downstream_task(params, "imagenet", prepared_vision)
    torch.manual_seed(0)
    random_encoder = task.build_encoder()
    pretrained = probe_value(model.encoder, task, params, 0.5, 0, info.device)
    scratch = probe_value(random_encoder, task, params, 0.5, 0, info.device)
    assert pretrained > scratch + 2.0, (pretrained, scratch)


def test_optuna_internals_only_in_next_queued_trial() -> None:
    """Private Optuna names (`_storage`, `_pop_waiting_trial_id`, `optuna.storages._heartbeat`)
    appear in one function of the package, which says why."""
    users = set()
    for path in (REPO / "d2v").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef):
                continue
            for node in ast.walk(fn):
                private = (
                    isinstance(node, ast.Attribute)
                    and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name)
                    and node.value.id in ("study", "trial", "optuna")
                ) or (
                    isinstance(node, ast.ImportFrom)
                    and (node.module or "").startswith("optuna")
                    and "._" in f".{node.module}"
                )
                if private:
                    users.add(f"{path.relative_to(REPO)}:{fn.name}")
    assert users == {"d2v/sweep.py:next_queued_trial"}

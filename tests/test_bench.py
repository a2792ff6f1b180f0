"""The bench stage on tiny budgets: it writes every key for both methods, in sane ranges, tracks
the run in MLflow, and its curve helpers read wall times right."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from d2v.bench import Curve, matmul_peak
from d2v.config import Modality
from tests.helpers import tiny_params

BENCH_TINY = [
    "model@bench.model=micro",
    "bench.warmup_steps=1",
    "bench.timed_steps=2",
    "bench.matmul_size=512",
    "bench.matmul_repeats=2",
    "bench.hf_repeats=2",
    "bench.probes=1",
    "pretrain.vision.v1.optim.steps=6",
    "pretrain.vision.v1.optim.warmup_steps=1",
    "pretrain.vision.v2.optim.steps=6",
    "pretrain.vision.v2.optim.warmup_steps=1",
    "pretrain.vision.v2.optim.batch_size=8",
    "pretrain.vision.v2.clone_batch=2",
]


def test_curve_first_reach_and_score_at_a_wall_time() -> None:
    c = Curve(steps=[0, 10, 20], wall_s=[0.0, 5.0, 10.0], scores=[50.0, 70.0, 80.0])
    assert c.first_reach(70.0, maximize=True) == 5.0
    assert c.first_reach(90.0, maximize=True) is None
    assert c.first_reach(60.0, maximize=False) == 0.0
    assert c.at(7.0) == 70.0 and c.at(100.0) == 80.0 and c.final == 80.0


def test_matmul_peak_is_a_positive_rate() -> None:
    import torch

    assert matmul_peak(torch.float32, 128, 2, torch.device("cpu")) > 0


@pytest.mark.slow
def test_bench_writes_every_key_for_both_methods(prepared_vision: Path, tmp_path: Path) -> None:
    from d2v.runs.bench import run_bench

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    params = tiny_params(*BENCH_TINY, f"tracking.uri={uri}")
    out = tmp_path / "bench.json"
    run_bench(params, Modality.vision, prepared_vision, out)
    got = json.loads(out.read_text())
    assert set(got["peak_gflops"]) == {"fp32", "bf16"}
    for method in ("v1", "v2"):
        entry = got["methods"][method]
        for key in ("samples_per_s", "flops_per_step", "mfu", "ema_share", "hf_speedup"):
            assert key in entry, (method, key)
        assert 0 < entry["mfu"] < 1 and 0 < entry["bf16"]["mfu"] < 1
        assert 0 < entry["ema_share"] < 1
        assert entry["flops_per_step"] > 0 and entry["samples_per_s"] > 0
        assert entry["hf_speedup"] > 0
        assert entry["probe_curve"]["steps"] == [0, 6]
        assert 0 <= entry["final_probe"] <= 100
    v2 = got["methods"]["v2"]
    assert "time_to_v1_probe_s" in v2 and "probe_at_v1_wall_s" in v2
    assert v2["time_to_v1_probe_s"] is None or v2["time_to_v1_probe_s"] >= 0
    # v2 runs the backbone on the visible tokens of M copies: fewer FLOPs per sample than v1
    mlflow.set_tracking_uri(uri)
    run = mlflow.get_run(got["mlflow_run_id"])
    assert run.data.tags["stage"] == "bench"
    assert run.data.metrics["v2.mfu"] == pytest.approx(v2["mfu"])
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "v1.probe")
    assert [m.step for m in history] == [0, 6]

"""Pretraining through a real DeepSpeed engine, in-process (one rank, gloo on CPU)."""

from __future__ import annotations

from pathlib import Path

import mlflow
import mlflow.pyfunc
import mlflow.pytorch
import pytest
import torch

from d2v.collapse import CollapseError
from d2v.config import Modality
from d2v.distributed import init_distributed
from d2v.modalities import pretrain_spec
from d2v.runs.pretrain import run_pretrain
from d2v.train import pretrain
from tests.conftest import V1, tiny_params


@pytest.fixture(scope="module")
def dist_info():
    return init_distributed()


def test_pretraining_loss_falls_on_real_images(
    prepared_vision: Path, dist_info, tmp_path: Path
) -> None:
    params = tiny_params(
        *V1, "pretrain.vision.v1.optim.steps=60", "pretrain.vision.v1.optim.lr=0.002"
    )
    spec = pretrain_spec(params, Modality.vision, prepared_vision)
    logged: list[tuple[int, dict]] = []
    model, teacher, result = pretrain(
        spec,
        params.deepspeed,
        dist_info,
        0,
        tmp_path / "ckpt",
        lambda metrics, step: logged.append((step, dict(metrics))),
    )
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 12
    assert [(s, m["loss"]) for s, m in logged] == [(h["step"], h["loss"]) for h in result.history]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:2]) / 2, losses
    assert result.final_target_std > 0.05  # not collapsed
    # the teacher moved towards the student
    s = dict(model.encoder.named_parameters())
    t = dict(teacher.model.named_parameters())
    assert not torch.equal(
        s["backbone.blocks.0.mlp.fc1.weight"], t["backbone.blocks.0.mlp.fc1.weight"]
    )


def test_collapsed_run_stops_is_marked_and_writes_nothing(
    prepared_vision: Path, dist_info, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    params = tiny_params(
        *V1,
        "pretrain.vision.collapse.min_target_std=100",
        "pretrain.vision.collapse.check_after=0",
        "pretrain.vision.collapse.patience=2",
        f"tracking.uri={uri}",
    )
    out = tmp_path / "models" / "pretrained"
    with pytest.raises(CollapseError, match="collapsed at step 10"):
        run_pretrain(
            params, Modality.vision, prepared_vision, out, tmp_path / "m.json", tmp_path / "ckpt"
        )
    assert not out.exists() and not (tmp_path / "m.json").exists()
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["d2v"])
    assert len(runs) == 1
    assert runs.loc[0, "status"] == "FAILED"
    assert runs.loc[0, "tags.collapsed"] == "true"


def test_run_pretrain_writes_model_and_tracks_it(
    prepared_vision: Path, dist_info, tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    params = tiny_params(*V1, "pretrain.vision.v1.optim.steps=20", f"tracking.uri={uri}")
    out = tmp_path / "models" / "pretrained"
    summary = run_pretrain(
        params, Modality.vision, prepared_vision, out, tmp_path / "m.json", tmp_path / "ckpt"
    )
    saved = torch.load(out / "encoder.pt", weights_only=False)
    assert {"encoder", "teacher", "config"} <= set(saved)
    assert (out / "config.yaml").exists() and (out / "summary.json").exists()
    assert not list((tmp_path / "ckpt").glob("vision/*/step*"))  # removed once the model is out
    mlflow.set_tracking_uri(uri)
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["collapsed"] == "false"
    assert run.data.params["pretrain.vision.v1.ema.tau_start"] == str(
        params.pretrain.vision.v1.ema.tau_start
    )
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "target_std")
    assert [m.step for m in history] == [5, 10, 15, 20]
    for key in ("loss", "lr", "tau", "pred_std", "samples_per_s", "copy_r2", "interp_r2"):
        assert key in run.data.metrics
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["git_revision"]
    assert_logged_encoder_matches(summary["mlflow_model_uri"], saved, params, prepared_vision)


def assert_logged_encoder_matches(uri: str, saved: dict, params, prepared: Path) -> None:
    """The MLflow model of the pretrained encoder loads back, through both the PyTorch and the
    pyfunc flavour, and gives the features the saved encoder state gives on the same images."""
    encoder = pretrain_spec(params, Modality.vision, prepared).build_encoder()
    encoder.load_state_dict(saved["encoder"])
    x = torch.randn(3, 1, 28, 28)  # another batch size than the logged example's 2
    with torch.no_grad():
        want = encoder.eval()(x).last
        got = mlflow.pytorch.load_model(uri)(x)
    assert torch.equal(got, want)
    predicted = mlflow.pyfunc.load_model(uri).predict(x.numpy())
    assert torch.allclose(torch.from_numpy(predicted), want)

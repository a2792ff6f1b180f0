"""Pretraining through a real DeepSpeed engine, in-process (one rank, gloo on CPU)."""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass
from pathlib import Path

import mlflow
import mlflow.pyfunc
import mlflow.pytorch
import pytest
import torch

from d2v.collapse import CollapseError
from d2v.config import Modality, Params
from d2v.distributed import init_distributed
from d2v.modalities import pretrain_spec
from d2v.runs.pretrain import run_pretrain
from d2v.tracking import Tracker
from d2v.train import pretrain
from tests.helpers import V1, tiny_params


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


@dataclass
class PretrainedRun:
    root: Path
    params: Params
    summary: dict
    saved: dict

    @property
    def uri(self) -> str:
        return f"sqlite:///{self.root}/mlruns.db"


@pytest.fixture(scope="module")
def pretrained_run(prepared_vision: Path, dist_info, tmp_path_factory) -> PretrainedRun:
    """One pretraining stage run into its own MLflow store (the tests below read it)."""
    root = tmp_path_factory.mktemp("pretrained-run")
    params = tiny_params(
        *V1, "pretrain.vision.v1.optim.steps=20", f"tracking.uri=sqlite:///{root}/mlruns.db"
    )
    out = root / "models" / "pretrained"
    summary = run_pretrain(
        params, Modality.vision, prepared_vision, out, root / "m.json", root / "ckpt"
    )
    assert not list((root / "ckpt").glob("vision/*/step*"))  # removed once the model is out
    return PretrainedRun(root, params, summary, torch.load(out / "encoder.pt", weights_only=False))


def test_run_pretrain_writes_model_and_tracks_it(pretrained_run: PretrainedRun) -> None:
    out, params = pretrained_run.root / "models" / "pretrained", pretrained_run.params
    assert {"encoder", "teacher", "config"} <= set(pretrained_run.saved)
    assert (out / "config.yaml").exists() and (out / "summary.json").exists()
    mlflow.set_tracking_uri(pretrained_run.uri)
    run = mlflow.get_run(pretrained_run.summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["collapsed"] == "false"
    assert run.data.params["pretrain.vision.v1.ema.tau_start"] == str(
        params.pretrain.vision.v1.ema.tau_start
    )
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "target_std")
    assert [m.step for m in history] == [5, 10, 15, 20]
    for key in ("loss", "lr", "tau", "pred_std", "samples_per_s", "copy_r2", "interp_r2"):
        assert key in run.data.metrics
    # what produced the run, and the experiment opens on MLflow's model-training pages
    assert run.data.tags["mlflow.source.git.commit"] == run.data.tags["git_revision"]
    experiment = mlflow.get_experiment_by_name("d2v")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def features_match(uri: str, run: PretrainedRun, prepared: Path) -> None:
    """The MLflow model at `uri` loads back, through both the PyTorch and the pyfunc flavour,
    and gives the features the saved encoder state gives on the same images."""
    encoder = pretrain_spec(run.params, Modality.vision, prepared).build_encoder()
    encoder.load_state_dict(run.saved["encoder"])
    x = torch.randn(3, 1, 28, 28)  # another batch size than the logged example's 2
    with torch.no_grad():
        want = encoder.eval()(x).last
        got = mlflow.pytorch.load_model(uri)(x)
    assert torch.equal(got, want)
    predicted = mlflow.pyfunc.load_model(uri).predict(x.numpy())
    assert torch.allclose(torch.from_numpy(predicted), want)


def test_logged_encoder_loads_back_with_the_same_features(
    pretrained_run: PretrainedRun, prepared_vision: Path
) -> None:
    mlflow.set_tracking_uri(pretrained_run.uri)
    features_match(pretrained_run.summary["mlflow_model_uri"], pretrained_run, prepared_vision)


def test_best_encoder_is_registered_only_when_it_beats_the_best(
    pretrained_run: PretrainedRun,
) -> None:
    tracker = Tracker(pretrained_run.params.tracking)
    uri, name = pretrained_run.summary["mlflow_model_uri"], "d2v-test-encoder"
    context = {"task": "imagenet", "metric": "top1", "model": "micro", "data_source": "x"}
    assert tracker.register_if_best(uri, name, 50.0, True, context) == "1"
    assert tracker.register_if_best(uri, name, 40.0, True, context) is None  # worse: stays
    assert tracker.register_if_best(uri, name, 60.0, True, context) == "2"
    other = {**context, "data_source": "full"}  # not comparable: the newest context wins
    assert tracker.register_if_best(uri, name, 10.0, True, other) == "3"
    assert tracker.register_if_best(uri, "d2v-test-cer", 30.0, False, context) == "1"
    assert tracker.register_if_best(uri, "d2v-test-cer", 20.0, False, context) == "2"  # lower
    client = mlflow.MlflowClient(pretrained_run.uri)
    assert str(client.get_model_version_by_alias(name, "best").version) == "3"
    assert client.get_model_version_by_alias("d2v-test-cer", "best").tags["score"] == "20.0"


def test_a_copied_store_uses_its_own_artifacts(
    pretrained_run: PretrainedRun, prepared_vision: Path, tmp_path: Path
) -> None:
    """A clone copied elsewhere (and the original gone) reads and writes the artifacts beside
    its own store, not the old clone's."""
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy2(pretrained_run.root / "mlruns.db", moved / "mlruns.db")
    shutil.copytree(pretrained_run.root / "mlartifacts", moved / "mlartifacts")
    params = dataclasses.replace(
        pretrained_run.params,
        tracking=dataclasses.replace(
            pretrained_run.params.tracking, uri=f"sqlite:///{moved}/mlruns.db"
        ),
    )
    original = pretrained_run.root / "mlartifacts"
    original.rename(original.with_name("away"))  # the old clone is gone
    try:
        tracker = Tracker(params.tracking)
        with tracker.run("after the move") as run_id:
            tracker.log_text("hello", "note.txt")
        here = (moved / "mlartifacts").as_uri()
        assert mlflow.get_experiment_by_name("d2v").artifact_location == here
        assert (moved / "mlartifacts" / run_id / "artifacts" / "note.txt").read_text() == "hello"
        old = mlflow.get_run(pretrained_run.summary["mlflow_run_id"])
        assert old.info.artifact_uri.startswith(f"{here}/")
        features_match(pretrained_run.summary["mlflow_model_uri"], pretrained_run, prepared_vision)
        assert not original.exists()  # nothing wrote into the old clone
    finally:
        original.with_name("away").rename(original)


SHARED_CASES = {
    "text": ("v1", "frontend.embed.weight"),
    "speech": ("v2", "frontend.proj.weight"),
}


@pytest.mark.parametrize("modality", SHARED_CASES)
def test_modules_the_teacher_shares_are_trained_in_the_student(
    modality: str, request: pytest.FixtureRequest, dist_info, tmp_path: Path
) -> None:
    """Text's embeddings and speech's frame projection are the student's, called by the teacher:
    they must train (they stayed at their random init while the teacher froze them)."""
    method, name = SHARED_CASES[modality]
    p = f"pretrain.{modality}"
    params = tiny_params(
        f"{p}.method={method}",
        f"{p}.{method}.optim.steps=4",
        f"{p}.{method}.optim.warmup_steps=1",
        f"{p}.log_every=2",
    )
    spec = pretrain_spec(
        params, Modality(modality), request.getfixturevalue(f"prepared_{modality}")
    )
    assert any(name.startswith(f"{s}.") for s in spec.shared)
    torch.manual_seed(0)  # the Trainer's initial weights for seed 0
    init = dict(spec.build_model().encoder.named_parameters())[name].detach().clone()
    model, teacher, _ = pretrain(spec, params.deepspeed, dist_info, 0, tmp_path / "ckpt")
    trained = dict(model.encoder.named_parameters())[name]
    assert trained.requires_grad
    assert not torch.equal(trained.detach(), init)
    assert dict(teacher.model.named_parameters())[name] is trained

"""The report shows exactly what a known MLflow store holds, and nothing from `metrics/`."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from d2v.config import ConfigError
from d2v.report import build_report, compare_runs
from d2v.report.sources import load_runs
from d2v.report.tables import fmt_mean_std
from tests.helpers import image_sizes, subprocess_env

PRE = {0: 71.0, 1: 72.5, 2: 73.25}
SCR = {0: 60.0, 1: 61.0, 2: 65.5}
TRIALS = [  # (top_k, value, state, collapsed)
    (1, 50.0, "COMPLETE", "false"),
    (2, 55.5, "COMPLETE", "false"),
    (3, 58.25, "COMPLETE", "false"),
    (4, 99.0, "COMPLETE", "true"),  # collapsed: must not be the best trial
    (5, None, "PRUNED", "false"),
]


def _run(client, exp: str, name: str, tags: dict, parent: str | None = None) -> str:
    tags = {"mlflow.runName": name, **tags}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return client.create_run(exp, tags={k: str(v) for k, v in tags.items()}).info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{tmp}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("d2v", artifact_location=(tmp / "art").as_uri())
    base = {"modality": "vision", "model": "micro", "git_revision": "abc123", "hardware": "cpu"}
    pre = _run(client, exp, "pretrain/vision", {**base, "stage": "pretrain", "seed": 0,
               "data_source": "fashion_mnist", "collapsed": "false"})  # fmt: skip
    for step in range(5):
        for k, v in {"loss": 1 / (step + 1), "tau": 0.999, "lr": 1e-3, "target_std": 0.5,
                     "pred_std": 0.4}.items():  # fmt: skip
            client.log_metric(pre, k, v, step=step)
    client.log_metric(pre, "wall_s", 12.0)
    client.log_param(pre, "pretrain.vision.v1.ema.tau_end", "0.9999")
    bad = _run(client, exp, "pretrain/vision", {**base, "stage": "pretrain", "collapsed": "true"})
    client.log_metric(bad, "loss", 0.0)
    client.log_metric(bad, "wall_s", 3.0)
    client.log_param(bad, "pretrain.vision.v1.ema.tau_end", "0.5")
    ev = {**base, "stage": "evaluate", "task": "imagenet", "dataset": "fashion-mnist",
          "metric": "top1"}  # fmt: skip
    parent = _run(client, exp, "evaluate/imagenet", ev)
    for init, values in (("pretrained", PRE), ("scratch", SCR)):
        for seed, v in values.items():
            r = _run(client, exp, f"evaluate/imagenet/{init}/seed{seed}",
                     {**ev, "init": init, "seed": seed, "pretrain_run_id": pre}, parent)  # fmt: skip
            client.log_metric(r, "top1", v)
    # a pretrained-init result built on the collapsed run: must be excluded
    r = _run(client, exp, "evaluate/imagenet/pretrained/seed7",
             {**ev, "init": "pretrained", "seed": 7, "pretrain_run_id": bad}, parent)  # fmt: skip
    client.log_metric(r, "top1", 12.345)
    sw = _run(client, exp, "sweep/vision", {**base, "stage": "sweep"})
    client.log_param(sw, "sweep.direction", "maximize")
    for k, v in {"trials_complete": 4, "trials_pruned": 1, "trials_fail": 0, "best_value": 58.25,
                 "importance.top_k": 0.75, "importance.mask_ratio": 0.25}.items():  # fmt: skip
        client.log_metric(sw, k, v)
    for i, (k, v, state, col) in enumerate(TRIALS):
        t = _run(client, exp, f"sweep/vision/trial{i}", {**base, "stage": "sweep",
                 "trial_number": i, "state": state, "collapsed": col}, sw)  # fmt: skip
        client.log_param(t, "pretrain.vision.v1.targets.top_k", str(k))
        client.log_metric(t, "proxy", 1.0, step=0)
        if v is not None:
            client.log_metric(t, "value", v)
    return {"uri": uri, "tmp": tmp, "pre": pre, "bad": bad}


@pytest.fixture(scope="module")
def report(store: dict) -> Path:
    return build_report(store["uri"], "d2v", store["tmp"] / "out")


def test_seed_means_and_sample_std(report: Path) -> None:
    md = report.read_text()
    for values in (PRE, SCR):
        v = list(values.values())
        expected = fmt_mean_std(statistics.mean(v), statistics.stdev(v), 3)  # stdev: ddof=1
        assert expected in md
    assert "72.250 ± 1.146 (n=3)" in md  # PRE by hand
    assert "84.2" in md and "Table 1" in md and "paper scale" in md


def test_collapsed_flagged_and_excluded(store: dict, report: Path) -> None:
    md = report.read_text()
    flagged = md.split("## Collapsed runs")[1].split("\n## ")[0]
    assert store["bad"] in flagged
    results = md.split("## Downstream results")[1].split("\n## Pretraining")[0]
    assert "12.345" not in results and "n=4" not in results
    pretrain = md.split("## Pretraining")[1].split("### Training curves")[0]
    assert store["pre"] in pretrain and store["bad"] not in pretrain


def test_sweep_best_trial_counts_importances(report: Path) -> None:
    md = report.read_text()
    sweep = md.split("## Sweeps")[1].split("\n## ")[0]
    assert "| 4 | 1 | 0 |" in sweep
    best = sweep.split("Best trials:")[1].split("Parameter importances")[0]
    rows = [r for r in best.splitlines() if re.match(r"\| \d", r)]
    assert rows[0].startswith("| 2 |") and "58.25" in rows[0]  # not the collapsed 99.0
    scores = [
        r.split("|")[3].strip() for r in rows
    ]  # run ids are random hex: only the score column
    assert scores == ["58.25", "55.5", "50"]  # the collapsed 99.0 is not a best trial
    assert sweep.index("| top_k | 0.750 |") < sweep.index("| mask_ratio | 0.250 |")
    assert "Parameter importances (from 4 complete trials: under 10" in sweep  # a caveat
    assert "figures/sweep_0_vision.png" in sweep


def test_figures_written_and_embedded(report: Path) -> None:
    out = report.parent
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert pngs == ["curves_vision.png", "sweep_0_vision.png"]
    html = (out / "report.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2
    assert 'src="figures/' not in html


def test_metrics_folder_changes_nothing(store: dict, report: Path, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    a = build_report(store["uri"], "d2v", tmp_path / "a").read_text()
    (tmp_path / "metrics" / "eval").mkdir(parents=True)
    (tmp_path / "metrics" / "eval" / "imagenet.json").write_text(
        '{"pretrained": {"top1": 1.0}, "scratch": {"top1": 2.0}, "seeds": [0]}'
    )
    b = build_report(store["uri"], "d2v", tmp_path / "b").read_text()
    shutil.rmtree(tmp_path / "metrics")
    c = build_report(store["uri"], "d2v", tmp_path / "c").read_text()
    assert a == b == c == report.read_text()


def test_rebuilt_report_is_byte_identical(store: dict, tmp_path: Path) -> None:
    """Two processes (string hashing differs between processes, and with it the order of
    anything collected in a set) build the same bytes from the same store."""
    build = "import sys; from d2v.report import build_report; build_report(sys.argv[1], 'd2v', sys.argv[2])"
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", build, store["uri"], str(out)],
            env=subprocess_env(PYTHONHASHSEED=seed),
        )
        for out, seed in zip(outs, ("1", "2"), strict=True)
    ]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert {Path("report.md"), Path("report.html")} <= set(files)
    assert files == sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file())
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f


def test_compare_runs_diff(store: dict) -> None:
    runs = load_runs(store["uri"], "d2v")
    diff = compare_runs([store["pre"], store["bad"]], runs)
    got = {(k, key): row for k, key, *row in diff.itertuples(index=False)}
    assert got[("param", "pretrain.vision.v1.ema.tau_end")] == ["0.9999", "0.5"]
    assert got[("metric", "wall_s")] == ["12", "3"]
    with pytest.raises(ConfigError, match=r"^invalid --compare \S+ nope: nope not among the"):
        compare_runs([store["pre"], "nope"], runs)
    with pytest.raises(ConfigError, match=r"^invalid --compare nope: nope not among"):
        compare_runs(["nope"], runs)


def test_a_filter_mlflow_cannot_parse_is_named_as_the_failure(store: dict, tmp_path: Path) -> None:
    from d2v.failures import expected_failure

    with pytest.raises(Exception) as e:
        build_report(store["uri"], "d2v", tmp_path, "tags.stage ==== 'sweep'")
    assert expected_failure(e.value).startswith("--filter \"tags.stage ==== 'sweep'\": ")
    assert not (tmp_path / "report.md").exists()


def test_filter_string(store: dict, tmp_path: Path) -> None:
    md = build_report(store["uri"], "d2v", tmp_path, "tags.stage = 'sweep'").read_text()
    assert "no evaluate runs" in md and "No pretrain runs." in md and "| 4 | 1 | 0 |" in md


@pytest.mark.parametrize("preset", [None, "sqlite:///elsewhere.db"])
def test_reading_a_store_leaves_the_tracking_uri_as_it_was(
    store: dict, monkeypatch, preset: str | None
) -> None:
    """Reading the store must not leave MLFLOW_TRACKING_URI (or MLflow's default) behind for the
    stores the process opens next (a Tracker built later would read it)."""
    import mlflow

    if preset is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", preset)
    mlflow.set_tracking_uri(preset)
    assert not load_runs(store["uri"], "d2v").empty
    assert os.environ.get("MLFLOW_TRACKING_URI") == preset
    mlflow.set_tracking_uri(None)


@pytest.mark.parametrize("experiment", ["d2v", "absent"])
def test_empty_store(tmp_path: Path, experiment: str) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    MlflowClient(tracking_uri=uri).create_experiment("d2v")
    md = build_report(uri, experiment, tmp_path / "out").read_text()
    assert "no runs found" in md
    for stage in ("pretrain", "evaluate", "sweep"):
        assert f"no {stage} runs" in md
    assert (tmp_path / "out" / "report.html").exists()


def test_html_images_load_in_chromium(report: Path, tmp_path: Path) -> None:
    dims = image_sizes(report.with_suffix(".html"), tmp_path)
    assert len(dims) == 2 and all(w > 0 and h > 0 for w, h in dims)


def test_headline_rows_name_the_run_that_produced_them(tmp_path: Path) -> None:
    """Each headline row names the evaluate run whose logged means are the file's, with its DVC
    experiment (or git revision), and not the newest run of the task, which logged others."""
    import json

    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("d2v", artifact_location=(tmp_path / "art").as_uri())
    ev = {"stage": "evaluate", "task": "imagenet", "modality": "vision", "metric": "top1"}
    ids = {}
    for name, tags, top1 in (
        ("ours", {"git_revision": "a" * 40, "dvc_experiment": "first-vision"}, (72.25, 62.17)),
        ("newer", {"git_revision": "b" * 40}, (10.0, 11.0)),  # another experiment's, later
    ):
        ids[name] = _run(client, exp, "evaluate/imagenet", {**ev, **tags})
        for init, v in zip(("pretrained", "scratch"), top1, strict=True):
            client.log_metric(ids[name], f"{init}_top1", v)
            client.log_metric(ids[name], f"{init}_top1_std", 1.0)
        client.set_terminated(ids[name])
    ev_dir = tmp_path / "eval"
    ev_dir.mkdir()
    result = {"task": "imagenet", "modality": "vision", "metric": "top1", "seeds": [0, 1],
              "pretrained": {"top1": 72.25, "top1_std": 1.0},
              "scratch": {"top1": 62.17, "top1_std": 1.0}}  # fmt: skip
    (ev_dir / "imagenet.json").write_text(json.dumps(result))
    md = build_report(uri, "d2v", tmp_path / "a", eval_dir=ev_dir).read_text()
    head = md.split("## Headline")[1].split("\n## ")[0]
    row = next(r for r in head.splitlines() if r.startswith("| vision | imagenet | top1 |"))
    assert row.endswith(f"| exp first-vision (aaaaaaa), run {ids['ours'][:8]} |"), row
    assert f"#/experiments/{exp}/runs/{ids['ours']}" in head and ids["newer"] not in head
    again = build_report(uri, "d2v", tmp_path / "b", eval_dir=ev_dir)
    assert again.read_bytes() == (tmp_path / "a/report.md").read_bytes()

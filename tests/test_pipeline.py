"""The vision, speech and text chains end to end through DVC at model=micro, in a temporary copy
of the repo (the text chain fetches the vaderSentiment source package from PyPI, as users do)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest

from tests.helpers import REPO, TINY, subprocess_env

pytestmark = pytest.mark.slow


SPEECH_TINY = [
    "data.speech.voices=[kal16,slt]",
    "data.speech.pitches=[120.0]",
    "data.speech.speeds=[0.9,1.1]",
    "data.speech.utterances_per_speaker=6",
    "data.speech.dev_speakers=1",
    "data.speech.test_speakers=1",
    "pretrain.speech.v1.optim.steps=10",
    "pretrain.speech.v1.optim.warmup_steps=2",
    "pretrain.speech.v1.optim.batch_size=8",
    "pretrain.speech.checkpoint_every=5",
    "pretrain.speech.collapse.check_after=1000",
    "finetune.librispeech.optim.steps=8",
    "finetune.librispeech.optim.warmup_steps=1",
    "finetune.librispeech.freeze_steps=2",
    "finetune.librispeech.probe.epochs=4",
    'sweep.speech.overrides=["pretrain.speech.v1.optim.steps=6","pretrain.speech.v1.optim.warmup_steps=1"]',
    "sweep.speech.n_trials=2",
    "sweep.speech.report_every=3",
]
TEXT_TINY = [
    "data.text.limit_docs=2000",
    "data.text.vocab_size=1000",
    "data.text.block_size=32",
    "data.text.max_seq_len=32",
    "pretrain.text.v1.optim.steps=10",
    "pretrain.text.v1.optim.warmup_steps=2",
    "pretrain.text.v1.optim.batch_size=16",
    "pretrain.text.collapse.check_after=1000",
    *(
        f"finetune.{t}.{k}"
        for t in ("sst2", "stsb", "mrpc", "cola")
        for k in (
            "optim.steps=6",
            "optim.warmup_steps=1",
            "label_fraction=0.05",
            "probe.label_fraction=0.05",
        )
    ),
    'sweep.text.overrides=["pretrain.text.v1.optim.steps=6","pretrain.text.v1.optim.warmup_steps=1"]',
    "sweep.text.n_trials=2",
    "sweep.text.report_every=3",
]


# two ablation cells per modality (tests/test_ablate.py runs real grids)
ABLATE_TINY = [
    f"ablate.{m}.{k}"
    for m, method, norm in (("vision", "v2", "instance"), ("speech", "v1", "instance"),
                            ("text", "v1", "layer"))
    for k in (
        "top_k=[1]",
        "sublayer=[ffn]",
        f"norm=[{norm}]",
        "seeds=[0]",
        f'overrides=["pretrain.{m}.{method}.optim.steps=3","pretrain.{m}.{method}.optim.warmup_steps=1",'
        f'"pretrain.{m}.checkpoint_every=1000"]',
    )
]  # fmt: skip


# the bench of both methods at the smallest budget that still runs every measurement
BENCH_TINY = [
    "model@bench.model=micro",
    "bench.warmup_steps=0",
    "bench.timed_steps=1",
    "bench.matmul_size=512",
    "bench.matmul_repeats=3",
    "bench.bf16=false",
    "bench.hf_repeats=1",
    "bench.probes=1",
    *(
        f"pretrain.{m}.v2.{k}"
        for m in ("vision", "speech", "text")
        for k in (
            "optim.steps=4",
            "optim.warmup_steps=1",
            "optim.batch_size=8",
            "clone_batch=2",
        )
    ),
]


# the pipeline's tiny settings, the vision fine-tuning smaller still, for the HF import test
TINY_FOR_IMPORT = [
    *TINY,
    "finetune.imagenet.optim.steps=4",
    "finetune.imagenet.optim.warmup_steps=1",
    "finetune.imagenet.label_fraction=0.05",
    "finetune.imagenet.probe.epochs=5",
    "downstream_workers=1",
]


def sh(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    bin_dir = str(Path(sys.executable).parent)
    env = subprocess_env(PATH=f"{bin_dir}:{subprocess_env()['PATH']}", OMP_NUM_THREADS="2")
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    if check:
        assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    return r


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory: pytest.TempPathFactory, fashion_source: Path) -> Path:
    dst = tmp_path_factory.mktemp("repo")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, dst / f)
    sh(["git", "init", "-q"], dst)
    overrides = [
        *TINY,
        "data.vision.limit_per_split=2000",
        f"data.vision.fashion_mnist_dir={fashion_source}",
        "seeds=[0,1]",
        "downstream_workers=1",  # spawning workers costs more than these tiny runs (test_pool.py)
        "finetune.imagenet.optim.steps=20",
        "finetune.imagenet.optim.warmup_steps=2",
        "finetune.imagenet.label_fraction=0.05",
        "finetune.imagenet.probe.epochs=20",
        'sweep.vision.overrides=["pretrain.vision.v2.optim.steps=10","pretrain.vision.v2.optim.warmup_steps=2",'
        '"pretrain.vision.v2.optim.batch_size=16"]',
        "sweep.vision.n_trials=2",
        "sweep.vision.report_every=5",
        *SPEECH_TINY,
        *TEXT_TINY,
        *BENCH_TINY,
        *ABLATE_TINY,
    ]
    sh([sys.executable, "-m", "d2v.cli", "params", *overrides], dst)
    return dst


@pytest.fixture(scope="module")
def reproduced(repo_copy: Path) -> Path:
    """The repo copy after `make run`'s chains side by side (`d2v repro`), then one `dvc repro`
    of every other stage (the tests below share it)."""
    ran = sh([sys.executable, "-m", "d2v.cli", "repro", "--with", "sweep@vision"], repo_copy).stdout
    assert all(f"[{m}] " in ran for m in ("vision", "speech", "text")), ran[-3000:]
    assert "Running stage 'sweep@vision'" in ran and "Running stage 'glue'" not in ran
    sh(["dvc", "repro"], repo_copy)
    return repo_copy


def test_dvc_repro_runs_every_chain(reproduced: Path) -> None:
    repo_copy = reproduced
    result = json.loads((repo_copy / "metrics/eval/imagenet.json").read_text())
    # the metrics contract of DESIGN.md
    assert result["seeds"] == [0, 1]
    for init in ("pretrained", "scratch"):
        for key in ("top1", "probe_top1"):
            assert 0 <= result[init][key] <= 100
            assert len(result["per_seed"][init][key]) == 2
    assert result["dataset"] == "fashion-mnist" and result["pretrain_collapsed"] is False
    assert (repo_copy / "models/vision/pretrained/encoder.pt").exists()
    assert sorted(p.name for p in (repo_copy / "models/imagenet/finetuned/scratch").iterdir()) == [
        "seed0.pt",
        "seed1.pt",
    ]

    shown = json.loads(sh(["dvc", "metrics", "show", "--json"], repo_copy).stdout)
    assert "top1" in json.dumps(shown) and "final_loss" in json.dumps(shown)

    # every stage tracked in MLflow; per-seed evaluation runs nested under the stage's run
    mlflow.set_tracking_uri(f"sqlite:///{repo_copy}/mlruns.db")
    runs = mlflow.search_runs(experiment_names=["d2v"])
    names = set(runs["tags.mlflow.runName"])
    html = (repo_copy / "reports/report.html").read_text()
    assert "data:image/png;base64," in html and "imagenet" in html
    sweep = json.loads((repo_copy / "metrics/sweep/vision.json").read_text())
    assert sweep["n_trials"] == 2 and len(sweep["trials"]) == 2
    assert sweep["baseline"]["number"] == 0
    for modality in ("speech", "text"):
        other = json.loads((repo_copy / f"metrics/sweep/{modality}.json").read_text())
        assert other["n_trials"] == 2 and len(other["trials"]) == 2
    assert {
        "sweep/vision",
        "download/vision",
        "prepare/vision",
        "pretrain/vision",
        "finetune/imagenet",
        "evaluate/imagenet",
    } <= names
    per_seed = runs[runs["tags.mlflow.runName"].str.startswith("evaluate/imagenet/")]  # 2 x 2
    assert len(per_seed) == 4 and per_seed["tags.mlflow.parentRunId"].notna().all()
    assert (runs[runs["tags.stage"] != "sweep"]["status"] == "FINISHED").all()

    # speech: WER / CER on the synthesized test speakers and, apart, on the real LibriVox clips
    speech = json.loads((repo_copy / "metrics/eval/librispeech.json").read_text())
    assert speech["metric"] == "wer" and speech["eval_split"] == "test"
    for init in ("pretrained", "scratch"):
        for key in ("wer", "cer", "real_wer", "real_cer", "probe_wer"):
            assert speech[init][key] >= 0 and len(speech["per_seed"][init][key]) == 2
    # text: each stand-in task's official metrics, and the GLUE table over them
    for task, key in (("sst2", "accuracy"), ("stsb", "pearson"), ("mrpc", "f1"), ("cola", "mcc")):
        result = json.loads((repo_copy / f"metrics/eval/{task}.json").read_text())
        assert (
            result["metric"] == key and key in result["pretrained"] and "glue" in result["scratch"]
        )
    glue = json.loads((repo_copy / "metrics/glue.json").read_text())
    assert glue["tasks"] == ["mrpc", "stsb", "cola", "sst2"] and not glue["complete"]
    assert glue["synthetic_tasks"] == ["cola"]
    assert {"glue_partial", "sst2"} <= set(glue["pretrained"])
    assert {"pretrain/speech", "evaluate/librispeech", "pretrain/text", "evaluate/sst2"} <= names

    # the bench: v1 against v2 per modality, every key the report reads
    for modality in ("vision", "speech", "text"):
        bench = json.loads((repo_copy / f"metrics/bench/{modality}.json").read_text())
        for method in ("v1", "v2"):
            entry = bench["methods"][method]
            assert 0 < entry["mfu"] < 1 and entry["samples_per_s"] > 0, (modality, method)
            for key in ("flops_per_step", "ema_share", "hf_speedup", "final_probe"):
                assert key in entry, (modality, method, key)
        assert "time_to_v1_probe_s" in bench["methods"]["v2"]
    sh([sys.executable, "-m", "d2v.cli", "report", "--out", "bench_report"], repo_copy)
    report = (repo_copy / "bench_report/report.md").read_text()
    assert "Performance: data2vec vs data2vec 2.0" in report and "bench_vision.png" in report

    for modality in ("vision", "speech", "text"):
        ablation = json.loads((repo_copy / f"metrics/ablate/{modality}.json").read_text())
        # the method's own targets (the default cell) and K = 1, once each
        assert len(ablation["cells"]) == ablation["n_cells"] == 2, modality

    # nothing changed: nothing reruns
    again = sh(["dvc", "repro"], repo_copy)
    assert "didn't change, skipping" in again.stdout + again.stderr or "up to date" in again.stdout


def changed_stages(repo: Path, *targets: str) -> set[str]:
    return set(json.loads(sh(["dvc", "status", "--json", *targets], repo).stdout))


def test_make_run_targets_up_to_date(reproduced: Path) -> None:
    # what `make run` reproduces, upstream included
    assert changed_stages(reproduced, "--with-deps", "report", "glue") == set()


def test_plots_show_training_curves(reproduced: Path) -> None:
    shown = json.loads(sh(["dvc", "plots", "show", "--json"], reproduced).stdout)["data"]
    for modality in ("vision", "speech", "text"):
        assert f"models/{modality}/pretrained/history.json" in shown, sorted(shown)
    for task in ("imagenet", "librispeech", "sst2"):
        curve = next(v for k, v in shown.items() if k.endswith(f"metrics/finetune/{task}.json"))
        rows = curve[0]["content"]["data"]["values"]
        assert rows and {"step", "pretrained", "scratch"} <= set(rows[0]), task


def test_editing_report_code_reruns_only_the_report(reproduced: Path) -> None:
    module = reproduced / "d2v/report/tables.py"
    text = module.read_text()
    module.write_text(text + "\n# an edit\n")
    try:
        assert changed_stages(reproduced) == {"report"}
    finally:
        module.write_text(text)
    assert changed_stages(reproduced) == set()


def stage_process_running(pgid: int, script: str) -> bool:
    """Whether a process of group `pgid` runs `script` (the stage's command, not DVC itself)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) == pgid and script.encode() in cmdline:
            return True
    return False


# Trees nothing rewrites in place (stages replace outputs by renaming, DVC and MLflow add new
# files): a copy of the repo hard-links them. The rest is copied: sqlite stores, params.yaml
# (`-S`), dvc.lock and DVC's state are rewritten in place.
LINKED = ("data", "models", "mlartifacts", ".dvc/cache")


def copy_repo(src: Path, dst: Path) -> None:
    def link_or_copy(a: str, b: str) -> None:
        rel = Path(a).relative_to(src).as_posix()
        if any(rel.startswith(f"{top}/") for top in LINKED):
            os.link(a, b)
        else:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, symlinks=True, copy_function=link_or_copy)


def metric_files(repo: Path) -> dict[str, bytes]:
    return {str(p.relative_to(repo)): p.read_bytes() for p in (repo / "metrics").rglob("*.json")}


def test_interrupted_exp_run_leaves_metrics_unchanged(reproduced: Path, tmp_path: Path) -> None:
    """Ctrl-C on a workspace `dvc exp run` while a stage runs: DVC deleted the stage's outputs
    before running it (metrics/pretrain/vision.json was lost); persisted outputs, replaced
    atomically by the stage, stay as they were. In a copy: the other tests share `reproduced`."""
    repo = tmp_path / "repo"
    copy_repo(reproduced, repo)
    # `-S` edits params.yaml in place, not recomposed from conf/ without the test's overrides
    sh(["dvc", "config", "hydra.enabled", "false"], repo)
    sh(["git", "add", "-A"], repo)
    sh(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"], repo)
    before = metric_files(repo)
    assert "metrics/pretrain/vision.json" in before
    bin_dir = str(Path(sys.executable).parent)
    env = subprocess_env(PATH=f"{bin_dir}:{subprocess_env()['PATH']}", OMP_NUM_THREADS="2")
    log = tmp_path / "exp.log"
    exp = subprocess.Popen(
        ["dvc", "exp", "run", "pretrain@vision", "-S", "pretrain.vision.v2.optim.steps=100000"],
        cwd=repo,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
        # A suite started in the background (`make test &`) ignores SIGINT, and so would every
        # process it starts: the exp run would never see the Ctrl-C. A terminal's child does not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        deadline = time.monotonic() + 300
        while not stage_process_running(exp.pid, "stages/pretrain.py"):
            assert exp.poll() is None and time.monotonic() < deadline, "the stage never started"
            time.sleep(0.2)
        time.sleep(1.0)  # inside the stage's command
        os.killpg(exp.pid, signal.SIGINT)
        code = exp.wait(timeout=60)
        assert code != 0, log.read_text()[-3000:]
    finally:
        if exp.poll() is None:
            os.killpg(exp.pid, signal.SIGKILL)
    assert metric_files(repo) == before
    status = json.loads(sh(["dvc", "status", "--json", "pretrain@vision"], repo).stdout)
    assert not [c for c in status.get("pretrain@vision", []) if "changed outs" in c], status
    changed = sh(["git", "status", "--porcelain"], repo).stdout.splitlines()
    assert changed == [" M params.yaml"], changed  # the -S edit, which DVC leaves in place


def test_models_are_logged_and_the_best_encoders_registered(reproduced: Path) -> None:
    """After the pipeline: every fine-tuned (init, seed) run holds its model, and each modality's
    pretrained encoder is registered with alias `best` from the run that evaluate scored."""
    repo_copy = reproduced
    client = mlflow.MlflowClient(f"sqlite:///{repo_copy}/mlruns.db")
    experiment = client.get_experiment_by_name("d2v")
    models = client.search_logged_models([experiment.experiment_id])
    finetuned = {m.source_run_id for m in models if m.name == "model"}
    runs = client.search_runs(
        [experiment.experiment_id], "tags.stage = 'finetune' and tags.init = 'scratch'"
    )
    assert {r.info.run_id for r in runs} <= finetuned and len(runs) >= 2
    for modality in ("vision", "speech", "text"):
        best = client.get_model_version_by_alias(f"d2v-{modality}-encoder", "best")
        summary = json.loads((repo_copy / f"models/{modality}/pretrained/summary.json").read_text())
        assert best.tags["pretrain_run_id"] == summary["mlflow_run_id"]
        assert best.run_id == summary["mlflow_run_id"]


def test_the_default_encoders_export_to_hf(reproduced: Path, tmp_path: Path) -> None:
    """The default encoders are the paper's: after the pipeline, vision and text export to HF
    model directories that `AutoModel.from_pretrained` loads as Data2Vec models; speech's default
    log-mel front end has no HF counterpart and is refused by name."""
    from transformers import AutoModel

    cli = [sys.executable, "-m", "d2v.cli"]
    for modality, cls in (("vision", "Data2VecVisionModel"), ("text", "Data2VecTextModel")):
        sh([*cli, "export", modality, "--to", "hf", str(tmp_path / modality)], reproduced)
        assert type(AutoModel.from_pretrained(tmp_path / modality)).__name__ == cls
    r = sh(
        [*cli, "export", "speech", "--to", "hf", str(tmp_path / "speech")], reproduced, check=False
    )
    assert r.returncode == 2 and "frontend" in r.stderr, r.stderr


def test_missing_source_names_the_package_and_param(repo_copy: Path, tmp_path: Path) -> None:
    work = tmp_path / "w"
    work.mkdir()
    sh(
        [
            sys.executable,
            "-m",
            "d2v.cli",
            "params",
            "--conf",
            str(repo_copy / "conf"),
            "--out",
            str(work / "params.yaml"),
            "data.vision.fashion_mnist_dir=/nonexistent/fashion-mnist",
        ],
        work,
    )
    r = sh([sys.executable, "-m", "d2v.cli", "download", "vision"], work, check=False)
    assert r.returncode == 2
    assert "dataset-fashion-mnist" in r.stderr and "data.vision.source" in r.stderr
    assert not (work / "data/raw/vision").exists()


def test_finetune_from_an_imported_hf_checkpoint_runs_through_dvc(
    repo_copy: Path, tmp_path: Path, fashion_source: Path
) -> None:
    """A user with an HF Data2VecVision checkpoint: params for the paper's encoder, `d2v import`
    into the pretrained model's place, then finetune@ / evaluate@ through DVC (-s: the stage
    alone; `dvc commit pretrain@vision` records the import for plain `dvc repro`)."""
    import torch
    from transformers import Data2VecVisionModel

    from d2v.config import Arch, ModelConfig
    from d2v.interop import hf_vision

    saved = (repo_copy / "params.yaml").read_text()
    try:
        sh(["dvc", "repro", "prepare@vision"], repo_copy)  # done already after the chains
        overrides = [
            "data.vision.limit_per_split=2000",  # as repo_copy's
            f"data.vision.fashion_mnist_dir={fashion_source}",
            "model.arch=paper",
            "pretrain.vision.pos=learned",
            "seeds=[0]",
        ]
        sh([sys.executable, "-m", "d2v.cli", "params", *TINY_FOR_IMPORT, *overrides], repo_copy)
        micro = ModelConfig(dim=64, depth=4, heads=4, arch=Arch.paper)
        cfg = hf_vision.hf_config(micro, hf_vision.VisionShape(28, 4, 1, "learned"))
        cfg.use_mask_token = False  # as the released checkpoints
        torch.manual_seed(0)
        Data2VecVisionModel(cfg).save_pretrained(tmp_path / "hf")
        cli = [sys.executable, "-m", "d2v.cli"]
        sh(
            [*cli, "import", "vision", f"hf:{tmp_path / 'hf'}", "--to", "models/vision/pretrained"],
            repo_copy,
        )
        sh(["dvc", "repro", "-s", "finetune@imagenet"], repo_copy)
        sh(["dvc", "repro", "-s", "evaluate@imagenet"], repo_copy)
        result = json.loads((repo_copy / "metrics/eval/imagenet.json").read_text())
        assert result["pretrained_from"] == f"hf:{tmp_path / 'hf'}"
        for init in ("pretrained", "scratch"):
            assert 0 <= result[init]["top1"] <= 100 and "probe_top1" in result[init]
    finally:
        (repo_copy / "params.yaml").write_text(saved)

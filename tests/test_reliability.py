"""Hostile inputs and faults thrown at the stages (issue 13): each one ends in exit code 2 and one
line naming its subject (or a counted skip), and leaves no valid-looking output behind.

The stages run in-process through `d2v.cli.main` in a temporary working directory: the same entry
point the DVC stages call, without a child interpreter's start-up. Grow this module with every
class of failure found.
"""

from __future__ import annotations

import copy
import logging
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from d2v.cli import main
from d2v.distributed import STALE_BUILD_LOCK_S, check_build_locks
from tests.helpers import REPO

PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def stage(capfd, *argv: str) -> str:
    """Run `d2v <argv>`, assert it failed as expected (exit 2), return its one-line message."""
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    err = capfd.readouterr().err
    assert e.value.code == 2, err
    lines = [line for line in err.splitlines() if " d2v: " in line]
    assert lines, err
    assert "Traceback" not in err, err
    return lines[-1].split(" d2v: ", 1)[1]


def write_params(where: Path, edit=None) -> Path:
    data = copy.deepcopy(PARAMS)
    if edit:
        edit(data)
    path = where / "params.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def no_outputs(where: Path) -> None:
    """Nothing a later stage could take for a result: no data, models, metrics or reports."""
    for out in ("data/prepared", "models", "metrics", "reports", "checkpoints"):
        assert not (where / out).exists(), out


# --- params: loaded strictly, every number checked, before any compute -------------------------


def _drop(*keys: str):
    def edit(data: dict) -> None:
        node = data
        for k in keys[:-1]:
            node = node[k]
        del node[keys[-1]]

    return edit


def _set(value, *keys: str):
    def edit(data: dict) -> None:
        node = data
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value

    return edit


def _no_bert_mask(data: dict) -> None:
    """Selected tokens neither masked nor replaced: the student would see the unmasked input."""
    data["pretrain"]["text"]["v1"]["mask"].update(mask_frac=0.0, random_frac=0.0)


@pytest.mark.parametrize(
    ("edit", "subject"),
    [
        (_drop("pretrain"), "missing param pretrain"),
        (_drop("pretrain", "vision", "v2", "optim"), "missing param pretrain.vision.v2.optim"),
        (_drop("data", "vision", "limit_per_split"), "missing param data.vision.limit_per_split"),
        (_set(-1, "data", "vision", "limit_per_split"), "data.vision.limit_per_split = -1"),
        (_set(float("inf"), "pretrain", "vision", "v2", "optim", "lr"), "v2.optim.lr = inf"),
        (_set(float("nan"), "pretrain", "text", "v1", "ema", "tau_end"), "v1.ema.tau_end = nan"),
        (_set(0.001, "pretrain", "vision", "v2", "mask", "ratio"), "vision.v2.mask.ratio"),
        (_no_bert_mask, "text.v1.mask.mask_frac"),
        (_set(0.0, "pretrain", "text", "v1", "mask", "mask_frac"), None),  # random tokens: masks
        (_set(1000, "pretrain", "speech", "v2", "mask", "length"), "speech.v2.mask.length"),
        (_set(0, "sweep", "vision", "heartbeat_s"), "sweep.vision.heartbeat_s = 0"),
        (_set(-3, "seed"), "seed = -3"),
    ],
)
def test_bad_params_exit_2_naming_the_param(tmp_path, monkeypatch, capfd, edit, subject) -> None:
    monkeypatch.chdir(tmp_path)
    if subject is None:  # the control: a sound edit of the same kind loads
        from d2v.params_io import read_params

        write_params(tmp_path, edit)
        read_params(tmp_path / "params.yaml")
        return
    write_params(tmp_path, edit)
    assert subject in stage(capfd, "prepare", "vision")  # the same params check in every stage
    no_outputs(tmp_path)


@pytest.mark.parametrize(
    ("content", "subject"),
    [
        ("", "params.yaml is empty"),
        ("seed: 0\nseeds: [0, 1\nmodel: {}\n", "params.yaml: invalid YAML at line 3"),
        ("- 1\n- 2\n", "<root>"),
        (None, "params.yaml is not a file"),  # a folder
    ],
)
def test_unreadable_params_file_exit_2_naming_file_and_line(
    tmp_path, monkeypatch, capfd, content, subject
) -> None:
    monkeypatch.chdir(tmp_path)
    if content is None:
        (tmp_path / "params.yaml").mkdir()
    else:
        (tmp_path / "params.yaml").write_text(content)
    assert subject in stage(capfd, "prepare", "vision")
    no_outputs(tmp_path)


def test_unknown_override_key_exit_2_naming_it(tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "params.yaml"
    msg = stage(capfd, "params", "--conf", str(REPO / "conf"), "--out", str(out), "seeed=1")
    assert "unknown param seeed" in msg
    assert not out.exists()


# --- the CLI boundary: outputs, stores and storages -------------------------------------------


def test_unwritable_output_exit_2_naming_the_path(tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "blocker").write_text("a file where a folder should be")
    msg = stage(capfd, "params", "--conf", str(REPO / "conf"), "--out", "blocker/params.yaml")
    assert "blocker" in msg
    assert (tmp_path / "blocker").read_text().startswith("a file")


def test_corrupt_tracking_store_exit_2_naming_it(tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    (tmp_path / "mlruns.db").write_bytes(b"not a database, " * 512)
    msg = stage(capfd, "report")
    assert "MLflow tracking store sqlite:///mlruns.db" in msg and "not a database" in msg
    no_outputs(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "foreign", "empty", "another file"])
def test_unreadable_model_file_exit_2_naming_it(tmp_path, monkeypatch, capfd, damage) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    path = tmp_path / "models" / "text" / "pretrained" / "encoder.pt"
    path.parent.mkdir(parents=True)
    torch.save({"encoder": {"w": torch.zeros(64, 64)}, "config": {}}, path)
    whole = path.read_bytes()
    torch.save({"state": {}}, tmp_path / "other.pt")  # a whole torch file, without "encoder"
    other = (tmp_path / "other.pt").read_bytes()
    path.write_bytes(
        {
            "truncated": whole[: len(whole) // 2],
            "foreign": b"PK\x03\x04" * 64,
            "empty": b"",
            "another file": other,
        }[damage]
    )
    msg = stage(capfd, "export", "text", "hf", "--to", "hf")
    assert msg.startswith("models/text/pretrained/encoder.pt: unreadable (")
    assert msg.endswith("re-run the stage that writes it")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("damage", ["truncated", "foreign", "empty"])
def test_unreadable_prepared_arrays_raise_data_error_naming_the_file(tmp_path, damage) -> None:
    import numpy as np

    from d2v.data.errors import DataError
    from d2v.data.text_shards import load_blocks, load_glue_split

    npy = tmp_path / "pretrain" / "train.npy"
    npz = tmp_path / "glue" / "sst2" / "dev.npz"
    npy.parent.mkdir(parents=True)
    npz.parent.mkdir(parents=True)
    np.save(npy, np.arange(64 * 128, dtype=np.int32).reshape(64, 128))
    np.savez(npz, input_ids=np.ones((8, 16), np.int32), labels=np.arange(8))
    readers = {
        npy: lambda: load_blocks(tmp_path),
        npz: lambda: load_glue_split(tmp_path, "sst2", "dev"),
    }
    for path, read in readers.items():
        read()  # whole, it reads
        whole = path.read_bytes()
        path.write_bytes(
            {"truncated": whole[:-100], "foreign": b"\x93NUMPY" * 40, "empty": b""}[damage]
        )
        with pytest.raises(
            DataError, match=rf"^{re.escape(str(path))}: unreadable \(.+\); rerun the"
        ):
            read()
    np.savez(npz, input_ids=np.ones((8, 16), np.int32))  # from another prepare version: no labels
    with pytest.raises(DataError, match=r"dev.npz: unreadable \(.*labels"):
        load_glue_split(tmp_path, "sst2", "dev")


@pytest.mark.parametrize("content", ['{"pretrained": ', '{"pretrained": {}}', "[1, 2]"])
def test_unreadable_metrics_json_exit_2_naming_it(tmp_path, monkeypatch, capfd, content) -> None:
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    (tmp_path / "metrics" / "eval").mkdir(parents=True)
    for task in ("cola", "mrpc", "sst2", "stsb"):  # cut short, or foreign
        (tmp_path / "metrics" / "eval" / f"{task}.json").write_text(content)
    for command in ("glue", "headline"):
        msg = stage(capfd, command)
        assert re.fullmatch(r"metrics/eval/(\w+)\.json: unreadable \(.+\); rerun evaluate@\1", msg)
    assert not (tmp_path / "metrics" / "glue.json").exists()


@pytest.mark.parametrize(
    ("index", "why"), [('{"ids": [', "Expecting value"), ('{"ids": []}', "'transcripts'")]
)
def test_unreadable_speech_index_raises_data_error_naming_it(tmp_path, index, why) -> None:
    import numpy as np

    from d2v.data.audio_shards import AudioSplit
    from d2v.data.errors import DataError

    for name, array in (
        ("audio", np.zeros(16, np.float16)),
        ("offsets", np.array([0, 16])),
        ("labels", np.zeros(2, np.int16)),
        ("label_offsets", np.array([0, 2])),
    ):
        np.save(tmp_path / f"{name}.npy", array)
    (tmp_path / "index.json").write_text(index)
    with pytest.raises(DataError, match=rf"index.json: unreadable \(.*{re.escape(why)}.*\); rerun"):
        AudioSplit(tmp_path)


def test_corrupt_study_storage_exit_2_naming_it(tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    write_params(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "sweep.db").write_bytes(b"not a database, " * 512)
    msg = stage(capfd, "sweep", "vision")
    assert "Optuna storage sqlite:///data/sweep.db" in msg
    no_outputs(tmp_path)


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "stages").glob("[a-z]*.py")))
def test_stage_under_a_python_without_d2v_exits_2_naming_it(tmp_path, script) -> None:
    """`dvc repro` without the venv active runs the stages with a Python that lacks d2v (here:
    `-S`, no site-packages): one line naming the interpreter and the fix, exit 2."""
    out = subprocess.run(
        [sys.executable, "-S", str(REPO / "stages" / script), "vision"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert out.stderr.splitlines() == [
        f"error: {sys.executable} cannot import 'd2v': run `make setup`, then"
        " `source .venv/bin/activate` before `dvc` (or use `make run`)"
    ]


def test_debug_shows_the_traceback(tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("")
    with pytest.raises(SystemExit):
        main(["prepare", "vision", "--debug"])
    assert "Traceback" in capfd.readouterr().err


# --- archives: one extraction policy ----------------------------------------------------------


def _tar(path: Path, entries: list[tuple[str, str, bytes | str]], mode: str = "w") -> Path:
    """entries: (name, kind 'file' | 'dir' | 'sym', data or link target)."""
    import io
    import tarfile

    with tarfile.open(path, mode) as tar:
        for name, kind, payload in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return path


@pytest.mark.parametrize(
    ("entries", "subject"),
    [
        (  # each link harmless when written; x/y -> .. then makes `l` (x/y/../..) climb out
            [("x", "dir", b""), ("l", "sym", "x/y/../.."), ("x/y", "sym", "..")],
            "link 'l'",
        ),
        ([("a", "dir", b""), ("a", "file", b"now a file")], "entry 'a'"),
        ([("a", "file", b"a file"), ("a/b", "file", b"under a file")], "entry 'a/b'"),
    ],
)
def test_hostile_tar_refused_naming_the_entry(tmp_path, entries, subject) -> None:
    from d2v.data.errors import DataError
    from tests.helpers import safe_extract_tar

    tar = _tar(tmp_path / "hostile.tar", entries)
    with pytest.raises(DataError, match="refusing") as e:
        safe_extract_tar(tar, tmp_path / "out")
    assert subject in str(e.value) and "hostile.tar" in str(e.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["hostile.tar"]  # no temporary left


def test_decompression_bomb_refused(tmp_path) -> None:
    from d2v.data.archive import ExtractLimits, safe_extract_zip
    from d2v.data.errors import DataError
    from tests.helpers import safe_extract_tar

    limits = ExtractLimits(max_ratio=50, ratio_after=1 << 20)  # the defaults, scaled down
    zeros = bytes(8 << 20)  # 8 MiB of zeros: ~1000x under gzip
    tar = _tar(tmp_path / "bomb.tar.gz", [("zeros", "file", zeros)], "w:gz")
    with pytest.raises(DataError, match="entry 'zeros' in .*bomb.tar.gz: decompresses over 50x"):
        safe_extract_tar(tar, tmp_path / "out", limits=limits)
    import zipfile

    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros", zeros)
    with pytest.raises(DataError, match="entry 'zeros' in .*bomb.zip: decompresses over 50x"):
        safe_extract_zip(tmp_path / "bomb.zip", tmp_path / "out", limits=limits)
    small = ExtractLimits(max_member_bytes=1 << 20)
    with pytest.raises(DataError, match="entry 'zeros' .* over 0.0009765"):
        safe_extract_tar(tar, tmp_path / "out", limits=small)
    assert not (tmp_path / "out").exists()
    # the same content within bounds extracts
    safe_extract_tar(tar, tmp_path / "out")
    assert (tmp_path / "out" / "zeros").stat().st_size == len(zeros)


def test_gzip_idx_that_announces_a_bomb_refused_before_reading(tmp_path) -> None:
    import gzip
    import struct

    from d2v.data.errors import DataError
    from d2v.data.fashion_mnist import read_idx

    header = bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 60000, 4096, 4096)  # 1 TB of pixels
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + bytes(1000)))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz announces"):
        read_idx(path)


# --- data: one validity policy where data enters ----------------------------------------------


def _speech_raw(root: Path, waves: dict[str, object], trans: dict[Path, str]) -> Path:
    import numpy as np
    import soundfile as sf

    for rel, wave in waves.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, np.asarray(wave, np.float32), 16000, "FLOAT")
    for rel, text in trans.items():
        (root / rel).write_text(text)
    return root


def _tone(n: int = 8000):
    import numpy as np

    return 0.2 * np.sin(np.arange(n) / 5.0)


def test_non_finite_audio_skipped_and_counted_or_fails_naming_the_file(tmp_path) -> None:
    import numpy as np

    from d2v.data.audio_prepare import prepare_speech
    from d2v.data.errors import DataError

    bad = _tone()
    bad[100], bad[200] = np.nan, np.inf
    raw = _speech_raw(
        tmp_path / "raw",
        {"train/7/1/7-1-0000.wav": _tone(), "train/7/1/7-1-0001.wav": bad},
        {Path("train/7/1/7-1.trans.txt"): "7-1-0000 HELLO\n7-1-0001 WORLD\n"},
    )
    meta = prepare_speech(raw, tmp_path / "out", {"train": ["train"]}, workers=1, eval_splits=[])
    assert meta.skipped["by_reason"] == {"non_finite": 1}
    assert meta.splits["train"]["utterances"] == 1
    with pytest.raises(DataError, match=r"2 non-finite samples .* in .*7-1-0001\.wav"):
        prepare_speech(raw, tmp_path / "failed", {"train": ["train"]}, on_corrupt="fail", workers=1)
    assert not (tmp_path / "failed").exists()


def test_duplicate_utterance_ids_refused_naming_them(tmp_path) -> None:
    from d2v.data.audio_prepare import prepare_speech
    from d2v.data.errors import DataError

    raw = _speech_raw(  # the same id under two speakers' folders
        tmp_path / "raw",
        {"train/7/1/7-1-0000.wav": _tone(), "train/8/1/7-1-0000.wav": _tone()},
        {
            Path("train/7/1/7-1.trans.txt"): "7-1-0000 HELLO\n",
            Path("train/8/1/7-1.trans.txt"): "7-1-0000 HELLO AGAIN\n",
        },
    )
    with pytest.raises(DataError, match=r"duplicate utterance ids .* 7-1-0000 \(.*train/7/1"):
        prepare_speech(raw, tmp_path / "out", {"train": ["train"]}, workers=1, eval_splits=[])
    assert not (tmp_path / "out").exists()


def test_16_bit_greyscale_image_is_scaled_not_saturated(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from d2v.data.image_folder import load_image

    ramp = np.tile(np.arange(0, 65536, 2048, dtype=np.uint16), (32, 1))  # 32 x 32, 0 .. 63488
    Image.fromarray(ramp).save(tmp_path / "wide.png")
    pixels = load_image(tmp_path / "wide.png", 32, 1)[..., 0]
    assert np.array_equal(pixels, (ramp >> 8).astype(np.uint8))  # saturated: all 255 past 255


def test_enormous_tsv_row_is_skipped_without_holding_it(tmp_path) -> None:
    from d2v.data.errors import DataError
    from d2v.data.glue import read_glue_tsv
    from d2v.data.lines import MAX_LINE_BYTES

    path = tmp_path / "train.tsv"
    with open(path, "w") as f:
        f.write("sentence\tlabel\nfine\t1\n")
        f.write("x" * (3 * MAX_LINE_BYTES) + "\t0\n")
        f.write("also fine\t0\n")
    examples, stats = read_glue_tsv(path, "sst2")
    assert [e.text_a for e in examples] == ["fine", "also fine"]
    assert stats["skipped"] == {"too_long": 1} and stats["bad_rows"][0].startswith(f"{path}:3:")
    with pytest.raises(DataError, match=rf"{path}:3: a row over"):
        read_glue_tsv(path, "sst2", on_bad_row="fail")


@pytest.mark.parametrize("content", [b"", b"\n\n", b"\xff\xfe\xfa\n\xc3\x28\n"])
def test_empty_or_undecodable_corpus_refused_naming_the_file(tmp_path, content) -> None:
    from d2v.data.errors import DataError
    from d2v.data.text import copy_local_corpus

    (tmp_path / "corpus.txt").write_bytes(content)
    with pytest.raises(DataError, match=r"corpus .*corpus\.txt has no documents"):
        copy_local_corpus(str(tmp_path / "corpus.txt"), tmp_path / "out")


# --- faults: killed writers, unfinished trials -------------------------------------------------


def test_killed_writers_temporaries_removed_on_the_next_run(tmp_path) -> None:
    import os

    from d2v.atomic import write_json

    dead = tmp_path / ".out.json.999999999.abc.tmp"  # a pid no process has
    old_style = tmp_path / ".out.json.k3jx_q.tmp"
    live = tmp_path / f".out.json.{os.getpid()}.xyz.tmp"  # a live writer's: kept
    for d in (dead, old_style, live):
        (d / "out.json").mkdir(parents=True)
    write_json(tmp_path / "out.json", {"ok": True})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.json", live.name])


def test_swap_killed_between_its_renames_keeps_the_last_complete_output(tmp_path) -> None:
    from d2v.atomic import atomic_path

    out = tmp_path / "model"
    (tmp_path / ".model.old").mkdir()  # killed after `model` -> `.model.old`, before the new one
    (tmp_path / ".model.old" / "weights").write_text("complete")
    with pytest.raises(RuntimeError), atomic_path(out) as tmp:  # the next run fails too
        tmp.mkdir()
        raise RuntimeError("killed again")
    assert (out / "weights").read_text() == "complete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_sweep_with_a_trial_still_running_is_not_summarized(tmp_path) -> None:
    import optuna

    from d2v.config import load_params
    from d2v.data.errors import DataError
    from d2v.sweep import refuse_unfinished

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    study.tell(study.ask(), 1.0)
    study.ask()  # trial 1: a worker holds it
    with pytest.raises(DataError, match=r"study s: trials \[1\] not finished"):
        refuse_unfinished(study, load_params(PARAMS).sweep["vision"])


def test_truncated_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog) -> None:
    import torch

    from d2v.checkpoint import load_checkpoint

    class Engine:  # DeepSpeed's load_checkpoint contract, without an engine
        def load_checkpoint(self, load_dir: str, tag: str):
            return f"{load_dir}/{tag}", {"step": int(tag.removeprefix("step"))}

    class Teacher:
        state = None

        def load_state_dict(self, state) -> None:
            self.state = state

    for step in (10, 20):
        tag = tmp_path / f"step{step:08d}"
        tag.mkdir()
        torch.save({"teacher": {"w": step}, "step": step, "state": {}}, tag / "teacher.pt")
    latest = tmp_path / "step00000020" / "teacher.pt"
    latest.write_bytes(latest.read_bytes()[:40])  # killed mid-copy
    (tmp_path / "latest").write_text("step00000020")
    teacher = Teacher()
    assert load_checkpoint(Engine(), teacher, tmp_path) == (10, {})
    assert teacher.state == {"w": 10}
    assert (
        "step00000020 unreadable" in caplog.text and "falling back to step00000010" in caplog.text
    )


def test_build_locks_named_at_once_and_stale_ones_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A build killed while compiling DeepSpeed's comm op leaves a lock torch waits on forever."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    stale, live = tmp_path / "deepspeed_shm_comm" / "lock", tmp_path / "py311_cpu" / "op" / "lock"
    for lock in (stale, live):
        lock.parent.mkdir(parents=True)
        lock.touch()
    old = time.time() - STALE_BUILD_LOCK_S - 60
    os.utime(stale, (old, old))
    with caplog.at_level(logging.WARNING, logger="d2v.distributed"):
        assert check_build_locks() == [stale]
    assert not stale.exists() and live.exists()
    assert str(stale) in caplog.text and str(live) in caplog.text


def test_unreachable_tracking_server_exits_2_within_seconds(tmp_path, monkeypatch, capfd) -> None:
    """MLflow would retry every request for minutes; the health check names the server at once."""
    import socket

    with socket.socket() as s:  # a free port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tracking"]["uri"] = uri
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    assert f"MLflow tracking server {uri}" in stage(capfd, "report", "--out", "out")
    assert time.monotonic() - start < 30 and not (tmp_path / "out").exists()

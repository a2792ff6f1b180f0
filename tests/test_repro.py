"""`d2v repro`: groups of DVC targets reproduced side by side in one real DVC repository."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from d2v.cli import main
from d2v.config import ConfigError
from d2v.runs.repro import chain_groups, parse_groups, run_groups, thread_share
from tests.helpers import subprocess_env, tiny_params

# each stage marks that it started, then waits for its partner's mark: run one after the other,
# the first would give up after 60 s and fail
RENDEZVOUS = textwrap.dedent(
    """
    import os, pathlib, sys, time
    me, partner = sys.argv[1], sys.argv[2]
    pathlib.Path(me + ".started").touch()
    end = time.monotonic() + 60
    while not pathlib.Path(partner + ".started").exists():
        if time.monotonic() > end:
            sys.exit(f"{partner} did not start while {me} ran")
        time.sleep(0.05)
    pathlib.Path(me + ".txt").write_text(os.environ["OMP_NUM_THREADS"])
    """
)

DVC_YAML = textwrap.dedent(
    """
    stages:
      a:
        cmd: python rendezvous.py a b
        deps: [rendezvous.py]
        outs: [a.txt]
      b:
        cmd: python rendezvous.py b a
        deps: [rendezvous.py]
        outs: [b.txt]
      after_b:
        cmd: python -c "open('c.txt', 'w').write(open('b.txt').read())"
        deps: [b.txt]
        outs: [c.txt]
      broken:
        cmd: python -c "raise SystemExit(3)"
        outs: [never.txt]
    """
)


@pytest.fixture
def dvc_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "rendezvous.py").write_text(RENDEZVOUS)
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    env = subprocess_env()
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=tmp_path, check=True, env=env)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    # the stages' `python` is this interpreter
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent), prepend=os.pathsep)
    return tmp_path


def test_groups_run_side_by_side_each_with_its_share_of_threads(dvc_repo: Path) -> None:
    out = io.StringIO()
    codes = run_groups({"a": ["a"], "after_b": ["after_b"]}, out=out)
    assert codes == {"a": 0, "after_b": 0}, out.getvalue()
    share = str(thread_share(2))
    assert (dvc_repo / "a.txt").read_text() == share
    assert (dvc_repo / "c.txt").read_text() == share  # after_b's group ran b first
    lines = out.getvalue().splitlines()
    assert any(line.startswith("[a] ") for line in lines)
    assert any(line.startswith("[after_b] ") and "'b'" in line for line in lines)
    # both groups wrote dvc.lock under DVC's lock: every stage is up to date afterwards
    status = subprocess.run(
        [sys.executable, "-m", "dvc", "status", "a", "after_b"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "up to date" in status.stdout, status.stdout


def test_a_failed_group_leaves_the_others_to_finish(dvc_repo: Path) -> None:
    # no partner to wait for: `a` writes its output at once
    (dvc_repo / "rendezvous.py").write_text(
        "import sys, pathlib\npathlib.Path(sys.argv[1] + '.txt').write_text('1')\n"
    )
    codes = run_groups({"broken": ["broken"], "a": ["a"]}, out=io.StringIO())
    assert codes["broken"] != 0 and codes["a"] == 0
    assert (dvc_repo / "a.txt").exists() and not (dvc_repo / "never.txt").exists()


def test_thread_share_and_group_parsing() -> None:
    assert thread_share(3, cores=2) == 1 and thread_share(2, cores=8) == 4
    assert thread_share(1, cores=2) == 2
    assert parse_groups(["a,b", "c"]) == {"a,b": ["a", "b"], "c": ["c"]}


def test_chains_are_the_modalities_evaluations_plus_their_extras() -> None:
    groups = chain_groups(tiny_params(), ["sweep@vision"])
    assert groups == {
        "vision": ["evaluate@imagenet", "sweep@vision"],
        "speech": ["evaluate@librispeech"],
        "text": ["evaluate@sst2", "evaluate@stsb", "evaluate@mrpc", "evaluate@cola"],
    }
    with pytest.raises(ConfigError, match="sweep@visoin.*vision"):
        chain_groups(tiny_params(), ["sweep@visoin"])


def test_an_empty_group_is_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["repro", "a", ","])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "group ','" in err[0], err

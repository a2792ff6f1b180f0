"""The lab scripts behind the README's dev figures (`experiments/`) still import what they use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.py"))


@pytest.mark.parametrize("script", EXPERIMENTS, ids=lambda p: p.name)
def test_lab_script_imports_and_parses_its_arguments(script: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_there_are_lab_scripts() -> None:
    assert {p.name for p in EXPERIMENTS} >= {"speech_dev_cer.py", "text_val.py"}

"""The headline `make run` ends with: verdicts from known results, a table that fits a terminal,
the GLUE row, and a clear exit 2 when nothing was evaluated."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from d2v.headline import Row, load_rows, render


def write_eval(d: Path, task: str, modality: str, metric: str, pre, scr, chance: float) -> None:
    d.mkdir(parents=True, exist_ok=True)
    result = {
        "task": task,
        "modality": modality,
        "metric": metric,
        "seeds": [0, 1, 2],
        "chance": {metric: chance},
        "pretrained": {metric: pre[0], f"{metric}_std": pre[1]},
        "scratch": {metric: scr[0], f"{metric}_std": scr[1]},
    }
    (d / f"{task}.json").write_text(json.dumps(result))


def test_verdicts() -> None:
    assert Row("v", "t", "top1", 76.0, 0.2, 72.0, 1.0, 10.0).verdict == "gain"
    assert Row("v", "t", "top1", 72.0, 0.2, 76.0, 1.0, 10.0).verdict == "pretraining hurts"
    assert Row("v", "t", "top1", 76.0, 2.0, 74.0, 1.0, 10.0).verdict == "no clear gain"
    # WER near 100 for both arms: the empty transcript scores 100
    assert Row("s", "t", "wer", 99.0, 1.0, 98.5, 1.0, 100.0).verdict == "not learning: at chance"
    # lower is better: 50 against 60 is a gain
    row = Row("s", "t", "cer", 50.0, 1.0, 60.0, 1.0, 100.0)
    assert row.gain == 10.0 and row.verdict == "gain"
    assert Row("t", "t", "mcc", 0.5, 0.1, 0.2, 0.1, 0.0).verdict == "not learning: at chance"
    assert Row("t", "t", "mcc", float("nan"), 0.1, 0.2, 0.1, 0.0).verdict == "missing"
    # one seed: stds of 0 would make any difference a "gain"
    assert (
        Row("v", "t", "top1", 76.0, 0.0, 72.0, 0.0, 10.0, seeds=1).verdict == "one seed: no spread"
    )
    assert Row("v", "t", "top1", 76.0, 0.0, 72.0, 0.0, 10.0, seeds=2).verdict == "gain"


def test_rows_from_metric_files_fit_a_terminal(tmp_path: Path) -> None:
    ev = tmp_path / "eval"
    write_eval(ev, "imagenet", "vision", "top1", (76.2, 0.1), (72.4, 1.1), 10.0)
    write_eval(ev, "librispeech", "speech", "wer", (99.8, 1.8), (98.3, 1.4), 100.0)
    write_eval(ev, "cola", "text", "mcc", (1.6, 2.1), (0.1, 5.0), 0.0)
    glue = tmp_path / "glue.json"
    glue.write_text(
        json.dumps(
            {
                "pretrained": {"glue_partial": 47.3, "glue_partial_std": 0.7},
                "scratch": {"glue_partial": 45.9, "glue_partial_std": 1.6},
            }
        )
    )
    rows = load_rows(ev, glue)
    assert [(r.task, r.verdict) for r in rows] == [
        ("imagenet", "gain"),
        ("librispeech", "not learning: at chance"),
        ("cola", "not learning: at chance"),
        ("glue", "no clear gain"),
    ]
    text = render(rows)
    assert max(len(line) for line in text.splitlines()) <= 120
    assert "84.2" in text  # the paper's ViT-B number, labelled paper scale in the header
    out = subprocess.run(
        [sys.executable, "-m", "d2v.cli", "headline", "--eval-dir", str(ev), "--glue", str(glue)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "not learning: at chance" in out.stdout and "report: reports/report.html" in out.stdout


def test_nothing_evaluated_exits_2(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "d2v.cli", "headline", "--eval-dir", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2 and str(tmp_path) in out.stderr

"""The headline of a run: per downstream result, pretrained against scratch over the seeds, the
gain, a verdict, and the paper's number (paper scale) where it has one.

Read from the evaluate stage's metrics files (`metrics/eval/<task>.json`, `metrics/glue.json`),
so the terminal after `make run` and the report's opening table say the same thing.

Verdicts, with spread = the larger of the two arms' sample stds:
- "not learning: at chance": the better arm is within max(2 spread, 1 point) of what a predictor
  that ignores its input scores (majority class, empty transcript, a constant);
- "gain" / "pretraining hurts": pretrained better / worse than scratch by more than 2 spread;
- "no clear gain": otherwise;
- "one seed: no spread" in place of gain / hurts / no clear gain when the row has fewer than two
  seeds (a difference without a spread is no evidence either way).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from d2v.data.errors import readable

LOWER_IS_BETTER = {"wer", "cer"}
# The paper's data2vec Base number for a task's metric, labelled with its setting.
PAPER = {
    ("imagenet", "top1"): "84.2 (ViT-B, IN-1k)",
    ("librispeech", "wer"): "12.3 (10 min labels)",
    ("sst2", "accuracy"): "91.8",
    ("stsb", "pearson"): "87.2 (P+S mean)",
    ("mrpc", "f1"): "90.2 (acc+F1 mean)",
    ("cola", "mcc"): "62.2",
    ("glue", "avg"): "82.7 (8 tasks)",
}
HEADERS = ("modality", "task", "metric", "pretrained", "scratch", "gain", "verdict", "paper scale")


def near_chance(score: float, chance: float, spread: float) -> bool:
    """The "not learning" rule: `score` within max(2 spread, 1 point) of the chance level."""
    return abs(score - chance) <= max(2 * spread, 1.0)


@dataclass(frozen=True)
class Row:
    modality: str
    task: str
    metric: str
    pretrained: float
    pretrained_std: float
    scratch: float
    scratch_std: float
    chance: float | None = None
    seeds: int = 0  # how many seeds the means and stds are over

    @property
    def lower_is_better(self) -> bool:
        return self.metric.removeprefix("probe_") in LOWER_IS_BETTER

    @property
    def gain(self) -> float:
        """Pretrained minus scratch, signed so that positive is better."""
        sign = -1.0 if self.lower_is_better else 1.0
        return sign * (self.pretrained - self.scratch)

    @property
    def verdict(self) -> str:
        spread = max(self.pretrained_std, self.scratch_std)
        if not all(math.isfinite(v) for v in (self.pretrained, self.scratch, spread)):
            return "missing"
        if self.chance is not None:
            best = min if self.lower_is_better else max
            if near_chance(best(self.pretrained, self.scratch), self.chance, spread):
                return "not learning: at chance"
        if 0 < self.seeds < 2:
            return "one seed: no spread"
        if self.gain > 2 * spread:
            return "gain"
        if self.gain < -2 * spread:
            return "pretraining hurts"
        return "no clear gain"

    @property
    def paper(self) -> str:
        return PAPER.get((self.task, self.metric), "")

    def cells(self) -> list[str]:
        return [
            self.modality,
            self.task,
            self.metric,
            f"{self.pretrained:.2f} ± {self.pretrained_std:.2f}",
            f"{self.scratch:.2f} ± {self.scratch_std:.2f}",
            f"{self.gain:+.2f}",
            self.verdict,
            self.paper,
        ]


def _metrics_of(result: dict) -> list[str]:
    """The rows a task shows: its official metric (+ CER beside speech's WER), and the probe's."""
    main = [result["metric"]] + (["cer"] if result["metric"] == "wer" else [])
    return main + [f"probe_{main[-1]}"]


def task_rows(result: dict) -> list[Row]:
    """Rows of one `metrics/eval/<task>.json`."""
    chance = result.get("chance", {})
    rows = []
    for metric in _metrics_of(result):
        pre, scr = result["pretrained"], result["scratch"]
        if metric not in pre or metric not in scr:
            continue
        rows.append(
            Row(
                result["modality"],
                result["task"],
                metric,
                pre[metric],
                pre.get(f"{metric}_std", 0.0),
                scr[metric],
                scr.get(f"{metric}_std", 0.0),
                chance.get(metric.removeprefix("probe_")),
                len(result.get("seeds", [])),
            )
        )
    return rows


def glue_row(glue: dict) -> Row | None:
    """The GLUE average (or the partial average over the tasks that ran)."""
    key = "glue" if "glue" in glue["pretrained"] else "glue_partial"
    if key not in glue["pretrained"]:
        return None
    pre, scr = glue["pretrained"], glue["scratch"]
    return Row("text", "glue", "avg", pre[key], pre[f"{key}_std"], scr[key], scr[f"{key}_std"])


MODALITY_ORDER = {"vision": 0, "speech": 1, "text": 2}


def load_rows(eval_dir: Path, glue_path: Path | None = None) -> list[Row]:
    """Every task's rows in `eval_dir`, vision / speech / text, then the GLUE average."""
    tasks: list[tuple[int, str, list[Row]]] = []
    for p in sorted(Path(eval_dir).glob("*.json")):
        with readable(p, f"rerun evaluate@{p.stem}"):  # not whole, or from another version
            r = json.loads(p.read_text())
            tasks.append((MODALITY_ORDER.get(r["modality"], 9), r["task"], task_rows(r)))
    rows = [row for *_, task in sorted(tasks, key=lambda t: t[:2]) for row in task]
    if glue_path is not None and Path(glue_path).exists():
        with readable(glue_path, "rerun glue"):
            row = glue_row(json.loads(Path(glue_path).read_text()))
        rows += [row] if row else []
    return rows


def render(rows: Iterable[Row]) -> str:
    """A fixed-width text table (what `make run` prints at its end)."""
    table = [list(HEADERS), *(r.cells() for r in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(HEADERS))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)

"""The report's "Ablations" section, from the ablation runs (stage=ablate) alone: per modality the
newest grid's cells (child runs), aggregated per axis value over seeds with the same function as
`metrics/ablate/<modality>.json`; per axis a figure in the manner of the paper's Figure 2, a
table beside the paper's numbers (paper scale), and in words where our trend disagrees."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from d2v.ablation.aggregate import axis_stats, fmt_stat
from d2v.ablation.grid import AXES, SEED
from d2v.config import Design
from d2v.headline import near_chance
from d2v.report import figures, paper
from d2v.report.document import Bullets, Document, Figure, Heading, Para, Table
from d2v.report.sources import stage_runs, tag

ORDER = {"sublayer": ("attn", "ffn", "ffn_res", "block"), "norm": ("instance", "layer", "none")}


def _param(run: pd.Series, key: str, kind: str = "params") -> str:
    v = run.get(f"{kind}.{key}")
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)


def grid(parent: pd.Series, children: pd.DataFrame) -> dict[str, Any]:
    """One grid from its MLflow runs: design, default cell, axes and cells (values as strings)."""
    paths = {a: _param(parent, f"ablate.param.{a}") for a in AXES}
    paths = {a: p for a, p in paths.items() if p}
    default = {a: _param(parent, f"ablate.default.{a}") for a in paths}
    cells = []
    for _, r in children.iterrows():
        value = r.get("metrics.value")
        cells.append(
            {
                **{a: _param(r, p) for a, p in paths.items()},
                SEED: _param(r, SEED),
                "value": None if value is None or math.isnan(value) else float(value),
                "state": _param(r, "state", "tags"),
                "collapsed": _param(r, "collapsed", "tags") == "true",
            }
        )
    axes = {}
    for a in paths:
        seen = {c[a] for c in cells} | {default[a]}
        order = ORDER.get(a)
        axes[a] = sorted(
            seen, key=int if a == "top_k" else lambda v, o=order: o.index(v) if v in o else len(o)
        )
    design = Design(_param(parent, "ablate.design") or "one_at_a_time")
    return {
        "design": design,
        "direction": _param(parent, "ablate.direction") or "maximize",
        "objective": _param(parent, "ablate.objective"),
        "default": default,
        "cells": cells,
        "stats": axis_stats(cells, axes, default, design),
    }


def _better(a: float, b: float, direction: str) -> bool:
    return a < b if direction == "minimize" else a > b


def _apart(a: dict, b: dict) -> bool:
    """Whether two axis values differ beyond twice the larger std over seeds: the headline's
    verdict rule, so that a gap the seeds' spread covers is no trend, either way."""
    return abs(a["mean"] - b["mean"]) > 2 * max(a["std"] or 0.0, b["std"] or 0.0)


def _within_spread(rows: list[dict]) -> bool:
    """Whether no two of the axis' values are `_apart` (no trend either way)."""
    return not any(_apart(a, b) for a in rows for b in rows)


def _best_first(rows: list[dict], direction: str) -> list[str]:
    """Axis values best to worst; values with no usable cell (collapsed) last."""
    sign = 1.0 if direction == "minimize" else -1.0
    return [
        str(r["value"])
        for r in sorted(rows, key=lambda r: math.inf if r["mean"] is None else sign * r["mean"])
    ]


def at_chance(rows: list[dict], chance: float | None) -> bool:
    """Whether every value of the axis scores within max(2 spread, 1 point) of the objective's
    chance level (the headline's "not learning" rule): the cells learned nothing the probe can
    read, so the axis cannot be ranked at this budget."""
    scored = [r for r in rows if r["mean"] is not None]
    if chance is None or not scored:
        return False
    return all(near_chance(r["mean"], chance, r["std"] or 0.0) for r in scored)


def objective_chance(runs: pd.DataFrame, objective: str) -> float | None:
    """The chance level of a grid's objective ("linear probe <metric> on <task>"), from the newest
    evaluate run of that task that logged it (`chance_<metric>`; for "score", its first). The
    string is the one `d2v.ablation.study.objective` logs on the grid's parent run."""
    words = objective.split()
    if len(words) < 5 or words[-2] != "on":
        return None
    metric, task = words[2], words[-1]
    ev = stage_runs(runs, "evaluate")
    ev = ev[tag(ev, "task") == task]
    for _, run in ev.iterrows():  # newest first
        keys = [k for k in run.index if k.startswith("metrics.chance_") and pd.notna(run[k])]
        if metric != "score":
            keys = [k for k in keys if k == f"metrics.chance_{metric}"]
        if keys:
            return float(run[keys[0]])
    return None


def verdict(axis: str, rows: list[dict], direction: str, chance: float | None = None) -> str:
    """Our trend against the paper's, in words."""
    if at_chance(rows, chance):
        return (
            f"At chance level in every cell ({chance:.2f}): the probe reads nothing from these "
            "encoders at this budget, so this grid cannot test the paper's trend."
        )
    got = {str(r["value"]): r for r in rows}
    if axis == "top_k":
        one, more = got.get("1"), [r for k, r in got.items() if k != "1" and r["mean"] is not None]
        if one is None or not more:
            return "K = 1 and K > 1 are not both in the grid: no comparison with Figure 2."
        best = (
            min(more, key=lambda r: r["mean"])
            if direction == "minimize"
            else max(more, key=lambda r: r["mean"])
        )
        if one["mean"] is None and not one["collapsed"]:
            return "K = 1 has no finished cell (a grid still running): no comparison yet."
        if one["mean"] is None:
            return f"K = 1 collapsed; K = {best['value']} scores {fmt_stat(best)}: agrees."
        if not _apart(best, one):
            return (
                f"No difference beyond the spread over seeds: K = {best['value']} "
                f"{fmt_stat(best)} vs K = 1 {fmt_stat(one)}; the paper's K = 1 is worst."
            )
        if _better(best["mean"], one["mean"], direction):
            return (
                f"K-averaging beats K = 1: K = {best['value']} {fmt_stat(best)} vs K = 1 "
                f"{fmt_stat(one)}; agrees with the paper."
            )
        return (
            f"Disagrees with the paper: K = 1 ({fmt_stat(one)}) is at least as good as the best "
            f"K > 1 (K = {best['value']}: {fmt_stat(best)})."
        )
    if axis == "sublayer":
        done = [r for r in rows if r["mean"] is not None or r["collapsed"]]  # collapsed: worst
        if len(done) < 2:
            return "Fewer than two sublayers have finished cells: no ordering to compare."
        got = {str(r["value"]): r for r in done}
        scored = [r for r in done if r["mean"] is not None]
        if not scored:
            return "Every sublayer's cells collapsed: no ordering to compare."
        if len(scored) == len(done) and _within_spread(scored):
            return (
                "No ordering beyond the spread over seeds (no two sublayers differ by more than "
                "twice their larger std): Table 5's cannot be tested here."
            )
        ours = _best_first(done, direction)
        ref = [s for s in paper.TABLE5_ORDER if s in got]
        if ours == ref:
            return f"Ordering {' > '.join(ours)} matches Table 5's."
        head = f"Ordering {' > '.join(ours)} (Table 5: {' > '.join(ref)})"
        return f"{head}: {_table5_claims(got, ours)}."
    on = [r for k, r in got.items() if k != "none" and r["mean"] is not None]
    off = got.get("none")
    if not on or off is None:
        return "Normalization on and off are not both in the grid."
    if off["mean"] is not None and _within_spread([on[0], off]):
        return f"No difference beyond the spread: on {fmt_stat(on[0])} vs off {fmt_stat(off)}."
    if off["mean"] is None or _better(on[0]["mean"], off["mean"], direction):
        return f"Target normalization helps ({fmt_stat(on[0])} vs off {fmt_stat(off)}): agrees."
    return f"Disagrees with the paper: normalization off ({fmt_stat(off)}) is no worse."


def _table5_claims(got: dict[str, dict], ours: list[str]) -> str:
    """Table 5's two claims, each checked against the seeds' spread: the FFN output is the best
    target, the attention output the worst (collapsed counts as worst)."""
    claims = []
    best, ffn = got[ours[0]], got.get("ffn")
    if ffn is not None and ours[0] != "ffn":
        if ffn["mean"] is not None and not _apart(best, ffn):
            claims.append(
                f"the FFN output is within the spread of the best ({ours[0]} {fmt_stat(best)} vs "
                f"ffn {fmt_stat(ffn)}), so Table 5's best is not contradicted"
            )
        else:
            claims.append(f"the best target here is {ours[0]}, not the FFN output")
    elif ffn is not None:
        claims.append("the FFN output is best, as in Table 5")
    attn = got.get("attn")
    if attn is not None:
        rest = [got[v] for v in ours if v != "attn" and got[v]["mean"] is not None]
        worst = ours[-1] == "attn"
        if worst and (attn["mean"] is None or all(_apart(attn, r) for r in rest)):
            claims.append("the attention output is worst beyond the spread, as in Table 5")
        elif worst:
            claims.append("the attention output is worst, but within the spread of another")
        else:
            claims.append(f"the worst is {ours[-1]}, not the attention output")
    return "; ".join(claims)


def _paper_cell(modality: str, axis: str, value: str) -> str:
    if axis == "sublayer":  # Table 5 is speech's
        return paper.TABLE5_WER.get(value, "") if modality == "speech" else ""
    if axis == "top_k":
        return "worst in every modality" if value == "1" else ""
    return "speech collapses" if value == "none" and modality == "speech" else ""


PAPER_HEADER = {
    "top_k": f"paper scale: {paper.FIGURE2_CLAIM.split(':')[0]}",
    "sublayer": f"paper scale: {paper.TABLE5_LABEL}",
    "norm": "paper scale: section 5.3",
}


def ablations(doc: Document, runs: pd.DataFrame) -> None:
    doc.add(Heading(1, "Ablations"))
    ab = stage_runs(runs, "ablate")
    parents = ab[tag(ab, "trial_number") == ""]
    if parents.empty:
        doc.add(
            Para(
                "No ablation runs: `dvc repro ablate@vision` (speech, text) runs them, then "
                "`dvc repro -f -s report` draws them here; `make run` does not run them (its "
                "20-minute budget)."
            )
        )
        return
    grids = {}
    for modality, g in parents.groupby(tag(parents, "modality"), sort=True):
        parent = g.iloc[0]  # newest
        grids[modality] = grid(parent, ab[tag(ab, "mlflow.parentRunId") == parent["run_id"]])
        grids[modality]["chance"] = objective_chance(runs, grids[modality]["objective"])
    doc.add(
        Para(
            "Grid studies over the paper's ablation axes (`conf/ablate/<modality>.yaml`): each "
            "cell a short pretraining run scored by a linear probe, once per seed; mean ± "
            "sample std over seeds; collapsed cells are kept and counted, never averaged in. "
            "The paper's numbers are paper scale (Base models, full datasets): compare trends."
        ),
        Table(
            ["modality", "design", "objective", "default cell", "cells", "collapsed"],
            [
                [
                    m,
                    g["design"].value,
                    f"{g['objective']} ({g['direction']})",
                    ", ".join(f"{a}={v}" for a, v in g["default"].items()),
                    str(len(g["cells"])),
                    str(sum(c["collapsed"] for c in g["cells"])),
                ]
                for m, g in grids.items()
            ],
        ),
    )
    for axis in AXES:
        have = {m: g for m, g in grids.items() if axis in g["stats"]}
        if not have:
            continue
        doc.add(Heading(2, axis))
        rows = [
            [m, str(r["value"]), fmt_stat(r), _paper_cell(m, axis, str(r["value"]))]
            for m, g in have.items()
            for r in g["stats"][axis]
        ]
        doc.add(Table(["modality", axis, "ours: mean ± std over seeds", PAPER_HEADER[axis]], rows))
        claim = {"top_k": paper.FIGURE2_CLAIM, "norm": paper.NORM_CLAIM}.get(axis)
        if claim:
            doc.add(Para(f"Paper scale, {claim}."))
        doc.add(
            Bullets(
                [
                    f"{m}: {verdict(axis, g['stats'][axis], g['direction'], g['chance'])}"
                    for m, g in have.items()
                ]
            ),
            Figure(
                f"ablate_{axis}.png",
                figures.ablation_axis(
                    {m: g["stats"][axis] for m, g in have.items()},
                    axis,
                    {m: g["objective"] for m, g in have.items()},
                ),
                f"ablation {axis}",
            ),
        )

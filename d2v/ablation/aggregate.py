"""An ablation's numbers: per axis value, the mean and sample std over seeds, from the cells.

A cell is a dict of its axis values, `seed`, `value` (None where it has none), `state` and
`collapsed`. Collapsed and failed cells stay in the cells and are counted per axis value, never
averaged in: a collapsed target is the finding (paper Table 5's attention output), not noise.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from d2v.ablation.grid import SEED
from d2v.config import Design


def usable(cell: dict[str, Any]) -> bool:
    v = cell.get("value")
    return not cell.get("collapsed") and v is not None and math.isfinite(v)


def _in_slice(cell: dict, axis: str, value: Any, default: dict, design: Design) -> bool:
    """Whether `cell` speaks for `axis = value`: any cell with it (factorial: the other axes
    are averaged over), or the cell with every other axis at the default (one at a time)."""
    if cell.get(axis) != value:
        return False
    if design == Design.factorial:
        return True
    return all(cell.get(a) == d for a, d in default.items() if a != axis and a in cell)


def axis_stats(
    cells: list[dict[str, Any]], axes: dict[str, list], default: dict[str, Any], design: Design
) -> dict[str, list[dict[str, Any]]]:
    """axis -> one row per value: mean and sample std (ddof=1) over seeds of the per-seed score
    (the mean over that seed's usable cells in the slice), n seeds, collapsed / failed counts."""
    out: dict[str, list[dict[str, Any]]] = {}
    for axis, values in axes.items():
        rows = []
        for value in values:
            chosen = [c for c in cells if _in_slice(c, axis, value, default, design)]
            per_seed: dict[int, list[float]] = {}
            for c in chosen:
                if usable(c):
                    per_seed.setdefault(c[SEED], []).append(float(c["value"]))
            scores = {s: statistics.fmean(v) for s, v in sorted(per_seed.items())}
            xs = list(scores.values())
            rows.append(
                {
                    "value": value,
                    "mean": statistics.fmean(xs) if xs else None,
                    "std": statistics.stdev(xs) if len(xs) > 1 else None,
                    "n": len(xs),
                    "per_seed": scores,
                    "cells": len(chosen),
                    "collapsed": sum(bool(c.get("collapsed")) for c in chosen),
                    "failed": sum(c.get("state") == "FAIL" for c in chosen),
                }
            )
        out[axis] = rows
    return out


def fmt_stat(row: dict[str, Any]) -> str:
    """'62.10 ± 0.40 (n=3)', with the collapsed count where any; 'collapsed (3/3)' if all."""
    if row["mean"] is None:
        if row["collapsed"]:
            return f"collapsed ({row['collapsed']}/{row['cells']})"
        return "missing"
    std = "" if row["std"] is None else f" ± {row['std']:.2f}"
    text = f"{row['mean']:.2f}{std} (n={row['n']})"
    return text + (f", {row['collapsed']} collapsed" if row["collapsed"] else "")

"""The report's performance section, from the bench runs (stage=bench) alone: per modality the
newest bench run's speed table (samples/s, FLOPs per step, MFU against the matmul peak, EMA
share, the HF race) and its time-to-accuracy figure (probe score against pretraining wall time
per method), with what v2 buys said in words."""

from __future__ import annotations

import math

import pandas as pd

from d2v.report import figures
from d2v.report.document import Document, Figure, Heading, Para, Table
from d2v.report.sources import metric_history, stage_runs, tag
from d2v.report.tables import fmt

COLUMNS = (
    ("samples/s", "samples_per_s", 1.0),
    ("GFLOP/step", "flops_per_step", 1e-9),
    ("MFU fp32 %", "mfu", 100.0),
    ("samples/s bf16", "bf16.samples_per_s", 1.0),
    ("MFU bf16 %", "bf16.mfu", 100.0),
    ("EMA share %", "ema_share", 100.0),
    ("x HF (fwd+bwd)", "hf_speedup", 1.0),
    ("final probe", "final_probe", 1.0),
    ("pretrain wall s", "pretrain_wall_s", 1.0),
)


def _metric(run: pd.Series, key: str) -> float:
    v = run.get(f"metrics.{key}", math.nan)
    return float(v) if v is not None else math.nan


def _methods(run: pd.Series) -> list[str]:
    names = {c.split(".")[1] for c in run.index if c.startswith("metrics.v")}
    return sorted(n for n in names if n in ("v1", "v2"))


def speed_table(run: pd.Series) -> Table:
    rows = []
    for m in _methods(run):
        rows.append([m] + [fmt(_metric(run, f"{m}.{key}") * scale) for _, key, scale in COLUMNS])
    return Table(["method", *(c for c, _, _ in COLUMNS)], rows)


def verdict(run: pd.Series) -> str:
    """What data2vec 2.0 bought in this bench run, in words."""
    v1_wall, v1_final = _metric(run, "v2.v1_wall_s"), _metric(run, "v2.v1_final_probe")
    reach = _metric(run, "v2.time_to_v1_probe_s")
    at_v1 = _metric(run, "v2.probe_at_v1_wall_s")
    if math.isnan(v1_wall):
        return "No time-to-accuracy comparison in this run."
    words = [
        f"v1 ends at probe {v1_final:.2f} after {v1_wall:.0f} s of pretraining;",
        f"v2 scores {at_v1:.2f} at that wall time",
    ]
    if math.isnan(reach):
        words.append("and never reaches v1's final score within its own budget.")
    else:
        words.append(
            f"and first reaches v1's final score after {reach:.0f} s "
            f"({100 * reach / v1_wall:.0f}% of v1's time, {v1_wall / max(reach, 1e-9):.1f}x less)."
        )
    return " ".join(words)


def performance(doc: Document, runs: pd.DataFrame, uri: str) -> None:
    doc.add(Heading(1, "Performance: data2vec vs data2vec 2.0 (bench)"))
    bench = stage_runs(runs, "bench")
    if bench.empty:
        doc.add(Para("No bench runs: `dvc repro bench` or `d2v bench <modality>` measures them."))
        return
    for modality, g in bench.groupby(tag(bench, "modality"), sort=True):
        run = g.iloc[0]  # newest
        peaks = ", ".join(f"{k} {fmt(_metric(run, f'peak_gflops.{k}'))}" for k in ("fp32", "bf16"))
        doc.add(
            Heading(2, f"{modality} (run {run['run_id'][:8]}, model {tag(g, 'model').iloc[0]})"),
            Para(
                f"Hardware: {tag(g, 'hardware').iloc[0]}; matmul peak GFLOP/s: {peaks}. "
                "Throughput, MFU and the HF race at the bench's model size; the probe curves at "
                "the pipeline's own model and budgets."
            ),
            speed_table(run),
            Para(verdict(run)),
        )
        curves = {}
        for m in _methods(run):
            h = metric_history(uri, run["run_id"], (f"{m}.probe", f"{m}.probe_wall_s"))
            if h.empty:
                continue
            wide = h.pivot_table(index="step", columns="key", values="value").dropna()
            curves[m] = (list(wide[f"{m}.probe_wall_s"]), list(wide[f"{m}.probe"]))
        if curves:
            doc.add(
                Figure(
                    f"bench_{modality}.png",
                    figures.probe_vs_wall(curves, f"bench/{modality}: probe vs wall time"),
                    f"time to accuracy {modality}",
                )
            )

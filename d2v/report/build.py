"""build_report: MLflow runs -> reports/report.md + a self-contained report.html + figures/*.png.

Sections: overview (what was run, where, at which scale), what is missing, collapsed runs,
downstream results per modality/task beside the paper's numbers, pretraining curves, sweeps, the
ablations beside the paper (top-K, target sublayer, target norm), the
bench (data2vec vs data2vec 2.0: speed, MFU, time-to-accuracy), and a side-by-side comparison of
chosen runs. Every section says so when its runs are absent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from d2v.atomic import atomic_path, write_text
from d2v.config import INITS
from d2v.report import figures, paper, provenance, tables
from d2v.report.ablations import ablations
from d2v.report.document import (
    Bullets,
    Document,
    Figure,
    Heading,
    Para,
    Table,
    to_html,
    to_markdown,
)
from d2v.report.performance import performance
from d2v.report.sources import load_runs, metric_history, stage_runs, tag

log = logging.getLogger(__name__)

EXPECTED_STAGES = ("pretrain", "finetune", "evaluate", "sweep")
# fANOVA importances (Optuna's default) from fewer complete trials than this rank noise
IMPORTANCE_MIN_TRIALS = 10


def headline(doc: Document, eval_dir: Path | None, glue: Path | None, runs: pd.DataFrame) -> None:
    """The same table `make run` ends with (d2v.headline), from the evaluate stage's files, each
    row naming the MLflow run, and the git revision or DVC experiment, that produced it."""
    from d2v.headline import HEADERS, load_rows

    doc.add(Heading(1, "Headline: pretrained vs scratch"))
    rows = load_rows(eval_dir, glue) if eval_dir is not None and eval_dir.is_dir() else []
    if not rows:
        where = f" in `{eval_dir}`" if eval_dir is not None else ""
        doc.add(Para(f"No evaluation results{where}: the headline is missing."))
        return
    made = [provenance.producing_run(runs, r) for r in rows]
    doc.add(
        Para(
            f"From `{eval_dir}`: mean ± sample std over seeds; gain > 0 is better for pretrained;"
            ' verdicts at twice the larger std, "not learning" within that of a predictor that'
            " ignores its input; paper numbers are paper scale (Base models, full datasets)."
            ' "produced by": the git revision or DVC experiment and the MLflow evaluate run'
            " that logged the row's values."
        ),
        Table(
            [*HEADERS, "produced by"],
            [[*r.cells(), provenance.produced_by(m)] for r, m in zip(rows, made, strict=True)],
        ),
    )
    found = {r.task: m for r, m in zip(rows, made, strict=True) if m is not None}
    if found:
        doc.add(
            Para("The runs in `mlflow ui` (the page after the server's address):"),
            Bullets([f"{t}: `{provenance.ui_path(m)}`" for t, m in found.items()]),
        )


def _values(runs: pd.DataFrame, name: str) -> str:
    vals = sorted({v for v in tag(runs, name) if v})
    return ", ".join(vals) if vals else "unknown"


def _short(run_id: str) -> str:
    return run_id[:8]


def overview(
    doc: Document, runs: pd.DataFrame, uri: str, experiment: str, filt: str | None
) -> None:
    doc.add(Heading(1, "Overview"))
    where = f"Experiment `{experiment}` in `{uri}`" + (f", filter `{filt}`" if filt else "")
    if runs.empty:
        doc.add(Para(f"{where}: no runs found. Nothing to report yet; run the pipeline first."))
        return
    stages = tag(runs, "stage").replace("", "(untagged)").value_counts().sort_index()
    pre = stage_runs(runs, "pretrain")
    wall = pre["metrics.wall_s"].sum() if "metrics.wall_s" in pre.columns else float("nan")
    top = runs[tag(runs, "mlflow.parentRunId") == ""]
    ends, starts = (pd.to_datetime(top[c], utc=True) for c in ("end_time", "start_time"))
    span = (ends - starts).dropna().dt.total_seconds().sum()  # unfinished runs have no end
    doc.add(
        Para(f"{where}: {len(runs)} runs included."),
        Table(
            ["item", "value"],
            [
                ["runs per stage", ", ".join(f"{k}: {v}" for k, v in stages.items())],
                ["git revision", _values(runs, "git_revision")],
                ["model size", _values(runs, "model")],
                ["data source", _values(runs, "data_source")],
                ["dataset", _values(runs, "dataset")],
                ["hardware", _values(runs, "hardware")],
                ["pretraining wall time (s)", tables.fmt(float(wall))],
                ["total wall time of top-level runs (s)", tables.fmt(float(span))],
            ],
        ),
    )
    sources = {v for v in tag(runs, "data_source") if v} | {v for v in tag(runs, "dataset") if v}
    scales = {s: paper.data_scale(s) for s in sorted(sources)}
    rows = {(sc.ours, sc.paper): [s, sc.ours, sc.paper] for s, sc in scales.items() if sc}
    rows = list(rows.values())  # one row per scale: `fashion_mnist` and `fashion-mnist` agree
    if rows:
        doc.add(
            Para("Scale of this run's data beside the paper's (compare trends, not absolutes):"),
            Table(["source", "this report", "paper scale"], rows),
        )


def missing(doc: Document, runs: pd.DataFrame) -> None:
    have = set(tag(runs, "stage")) if not runs.empty else set()
    gone = [s for s in EXPECTED_STAGES if s not in have]
    doc.add(Heading(1, "Missing"))
    if gone:
        doc.add(Bullets([f"no {s} runs" for s in gone]))
    else:
        doc.add(Para("Runs of every stage are present."))


def collapsed(doc: Document, runs: pd.DataFrame) -> None:
    doc.add(Heading(1, "Collapsed runs (excluded from all result tables)"))
    bad = tables.collapsed_runs(runs)
    if bad.empty:
        doc.add(Para("None."))
        return
    doc.add(
        Bullets(
            [
                f"{n} ({r}) stage {s}, modality {m}"
                for r, n, s, m in zip(
                    bad["run_id"],
                    tag(bad, "mlflow.runName"),
                    tag(bad, "stage"),
                    tag(bad, "modality"),
                    strict=True,
                )
            ]
        )
    )


def results(doc: Document, runs: pd.DataFrame) -> None:
    doc.add(Heading(1, "Downstream results: pretrained vs scratch"))
    summary = tables.seed_summary(tables.eval_results(runs))
    if summary.empty:
        doc.add(Para("No evaluate runs: downstream results are missing."))
        return
    note = "Mean ± sample std (ddof=1) over seeds; n is the number of seeds."
    ev = runs[(tag(runs, "stage") == "evaluate") & (tag(runs, "init") != "")]
    stale = len(ev) - tables.eval_results(runs)["run_id"].nunique()
    if stale:
        note += (
            f" {stale} older or collapsed-based evaluate runs are not counted (newest re-run wins)."
        )
    doc.add(Para(note))
    for (modality, task, dataset), g in summary.groupby(["modality", "task", "dataset"]):
        ref = paper.table_for(str(modality))
        doc.add(Heading(2, f"{modality} / {task}" + (f" ({dataset})" if dataset else "")))
        header = ["metric", *INITS]
        ref_col = None
        col = paper.column_for(ref, str(task)) if ref is not None else None
        if col is None:
            ref = None
        if ref is not None:
            ref_col = f"paper scale: data2vec {ref.columns[col]} ({ref.label})"
            header.append(ref_col)
        rows = []
        for metric, m in g.groupby("metric", sort=True):
            row = [str(metric)]
            for init in INITS:
                s = m[m["init"] == init]
                row.append(
                    tables.fmt_mean_std(s["mean"].iloc[0], s["std"].iloc[0], int(s["n"].iloc[0]))
                    if len(s)
                    else "missing"
                )
            if ref is not None:
                row.append(_paper_value(ref, col) if metric == ref.metric else "")
            rows.append(row)
        doc.add(Table(header, rows))
        if ref is not None:
            doc.add(
                Para(f"Paper scale, {ref.label}: {ref.title}."),
                Table(["model", *ref.columns], [[k, *v] for k, v in ref.rows.items()]),
            )


def _paper_value(ref: paper.PaperTable, col: int | None) -> str:
    row = next((v for k, v in ref.rows.items() if k.startswith("data2vec")), None)
    return row[col] if row and col is not None else ""


def pretraining(doc: Document, runs: pd.DataFrame, uri: str) -> None:
    doc.add(Heading(1, "Pretraining"))
    pre = stage_runs(runs, "pretrain")
    if pre.empty:
        doc.add(Para("No pretrain runs."))
        return
    t = tables.pretrain_table(runs)
    if t.empty:
        doc.add(Para("Every pretrain run collapsed."))
    else:
        doc.add(Table(list(t.columns), [[tables.fmt(v) for v in r] for r in t.itertuples(False)]))
    bad = set(tables.collapsed_runs(runs)["run_id"])
    for modality, g in pre.groupby(tag(pre, "modality")):
        hist = {}
        for rid in g["run_id"]:
            label = _short(rid) + (" (collapsed)" if rid in bad else "")
            hist[label] = metric_history(uri, rid)
        if all(h.empty for h in hist.values()):
            doc.add(Para(f"{modality}: no per-step metrics logged."))
            continue
        doc.add(
            Heading(2, f"Training curves: {modality}"),
            Figure(
                f"curves_{modality}.png",
                figures.training_curves(hist, f"pretrain/{modality}"),
                f"training curves {modality}",
            ),
        )


def sweeps(doc: Document, runs: pd.DataFrame) -> None:
    doc.add(Heading(1, "Sweeps"))
    views = tables.sweeps(runs)
    if not views:
        doc.add(Para("No sweep runs."))
        return
    for i, v in enumerate(views):
        name = tag(v.parent.to_frame().T, "mlflow.runName").iloc[0] or v.parent["run_id"]
        doc.add(
            Heading(2, f"{name} ({_short(v.parent['run_id'])}), {v.direction}"),
            Table(["complete", "pruned", "failed"], [[str(x) for x in v.counts.values()]]),
        )
        best = v.best()
        if best.empty:
            doc.add(Para("No complete, non-collapsed trials."))
        else:
            cols = [c.removeprefix("params.") for c in v.swept]
            doc.add(
                Para("Best trials:"),
                Table(
                    ["trial", "run", "value", *cols],
                    [
                        [
                            tag(best, "trial_number")[k],
                            _short(r["run_id"]),
                            tables.fmt(r["metrics.value"]),
                        ]
                        + [tables.fmt(r[c]) for c in v.swept]
                        for k, r in best.iterrows()
                    ],
                ),
            )
        if v.importances:
            complete = v.counts["complete"]
            caveat = (
                f" (from {complete} complete trials: under {IMPORTANCE_MIN_TRIALS}, a ranking "
                "this small is mostly noise; run more trials before trusting it)"
                if complete < IMPORTANCE_MIN_TRIALS
                else ""
            )
            doc.add(
                Para(f"Parameter importances{caveat}:"),
                Table(["param", "importance"], [[k, f"{x:.3f}"] for k, x in v.importances.items()]),
            )
        usable = v.usable()
        if not usable.empty and v.swept:
            doc.add(
                Figure(
                    f"sweep_{i}_{tag(v.parent.to_frame().T, 'modality').iloc[0] or 'x'}.png",
                    figures.sweep_scatter(usable, v.swept, "metrics.value", f"{name}: objective"),
                    f"objective vs swept params, {name}",
                )
            )


def comparison(doc: Document, runs: pd.DataFrame, run_ids: Sequence[str]) -> None:
    doc.add(Heading(1, "Run comparison"))
    if not run_ids:
        pre = stage_runs(runs, "pretrain")
        run_ids = list(pre["run_id"][:4])
    diff = tables.compare_runs(run_ids, runs)  # an id it lacks is refused, even alone
    if len(run_ids) < 2:
        doc.add(Para("Fewer than two runs chosen: no comparison."))
        return
    if diff.empty:
        doc.add(Para("The chosen runs have identical params and metrics."))
        return
    doc.add(Table(list(diff.columns), diff.astype(str).values.tolist()))


def build_report(
    tracking_uri: str,
    experiment: str,
    out_dir: Path,
    filter_string: str | None = None,
    compare: Sequence[str] = (),
    eval_dir: Path | None = None,
    glue: Path | None = None,
) -> Path:
    """Write out_dir/report.md, out_dir/report.html and out_dir/figures/*.png (each
    replaced atomically); returns the markdown path. `compare`: run ids to set side by side
    (default: the pretrain runs, when there are two or more). `eval_dir` / `glue`: the evaluate
    and glue stages' metrics files, for the headline table the report opens with."""
    out_dir = Path(out_dir)
    runs = load_runs(tracking_uri, experiment, filter_string)
    doc = Document("d2v report")
    headline(doc, eval_dir, glue, runs)
    overview(doc, runs, tracking_uri, experiment, filter_string)
    missing(doc, runs)
    collapsed(doc, runs)
    results(doc, runs)
    pretraining(doc, runs, tracking_uri)
    sweeps(doc, runs)
    ablations(doc, runs)
    performance(doc, runs, tracking_uri)
    comparison(doc, runs, compare)
    # Each output replaced atomically on its own: out_dir may hold other files (a README).
    with atomic_path(out_dir / "figures") as tmp:
        tmp.mkdir()
        for f in doc.figures:
            (tmp / f.name).write_bytes(f.png)
    write_text(out_dir / "report.html", to_html(doc))
    write_text(out_dir / "report.md", to_markdown(doc))
    log.info("report with %d runs, %d figures written to %s", len(runs), len(doc.figures), out_dir)
    return out_dir / "report.md"

"""Report figures as PNG bytes (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

# (panel title, metric keys drawn in it)
CURVE_PANELS = (
    ("loss", ("loss",)),
    ("EMA tau", ("tau",)),
    ("learning rate", ("lr",)),
    ("target / prediction std", ("target_std", "pred_std")),
)


def _png(fig: plt.Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def training_curves(histories: dict[str, pd.DataFrame], title: str) -> bytes:
    """One panel per CURVE_PANELS entry, one line per run and key vs step.

    histories: run label -> frame of (step, key, value) as `sources.metric_history` returns.
    """
    fig, axes = plt.subplots(1, len(CURVE_PANELS), figsize=(4 * len(CURVE_PANELS), 3.2))
    for ax, (name, keys) in zip(axes, CURVE_PANELS, strict=True):
        for label, h in histories.items():
            for key in keys:
                s = h[h["key"] == key].sort_values("step")
                if not s.empty:
                    suffix = f" {key}" if len(keys) > 1 else ""
                    ax.plot(s["step"], s["value"], label=f"{label}{suffix}")
        ax.set_title(name)
        ax.set_xlabel("step")
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    return _png(fig)


def _numeric(s: pd.Series) -> pd.Series | None:
    out = pd.to_numeric(s, errors="coerce")
    return out if out.notna().all() else None


def _param_label(col: str) -> str:
    """`params.pretrain.vision.v2.ema.tau_start` -> `ema.tau_start`: the dotted path's last two."""
    return ".".join(col.removeprefix("params.").split(".")[-2:])


def sweep_scatter(trials: pd.DataFrame, params: list[str], objective: str, title: str) -> bytes:
    """Objective vs each swept param, one panel each; the mean per value is drawn as a line
    where a param takes few values (the top-K plot in the manner of paper Figure 2). EMA taus,
    all within [0.9, 1), are drawn as 1 - tau on a log axis, as the sweep samples them; at most
    four slanted ticks per axis keep the labels apart."""
    n = max(len(params), 1)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.4), squeeze=False)
    y = trials[objective].astype(float)
    for ax, col in zip(axes[0], params, strict=False):
        label = _param_label(col)
        x = _numeric(trials[col])
        if x is None:  # categorical: place the categories on integer positions
            cats = sorted(trials[col].astype(str).unique())
            x = trials[col].astype(str).map({c: i for i, c in enumerate(cats)})
            ax.set_xticks(range(len(cats)), cats)
        elif bool(((x >= 0.9) & (x < 1)).all()) and x.nunique() > 1:  # an EMA tau
            x, label = 1 - x, f"1 - {label}"
            ax.set_xscale("log")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=bool((x == x.round()).all())))
        ax.scatter(x, y)
        if 1 < x.nunique() <= 8 and bool((x == x.round()).all()):  # discrete, like K
            means = y.groupby(x).mean().sort_index()
            ax.plot(means.index, means.values, "--", alpha=0.6, label="mean")
            ax.legend(fontsize=7)
        ax.tick_params(axis="x", labelsize=7, labelrotation=30)
        ax.set_xlabel(label, fontsize=8)
        ax.set_ylabel(objective.removeprefix("metrics."))
    if not params:
        axes[0][0].text(0.5, 0.5, "no swept params", ha="center")
    fig.suptitle(title)
    fig.tight_layout()
    return _png(fig)


def probe_vs_wall(curves: dict[str, tuple[list[float], list[float]]], title: str) -> bytes:
    """One line per method: linear-probe score against pretraining wall time (s)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    for label, (wall, score) in sorted(curves.items()):
        ax.plot(wall, score, marker="o", label=label)
    ax.set_xlabel("pretraining wall time (s)")
    ax.set_ylabel("linear probe")
    ax.set_title(title)
    ax.legend()
    return _png(fig)


def ablation_axis(panels: dict[str, list[dict]], axis: str, ylabels: dict[str, str]) -> bytes:
    """Paper Figure 2's manner: one panel per modality, the score's mean ± std over seeds
    against the axis value; values whose every cell collapsed are marked with an x at the
    panel's floor.

    panels: modality -> rows of `ablation.aggregate.axis_stats` (value, mean, std, collapsed).
    """
    n = max(len(panels), 1)
    fig, axes = plt.subplots(1, n, figsize=(4 * n, 3.2), squeeze=False)
    for ax, (modality, rows) in zip(axes[0], sorted(panels.items()), strict=False):
        xs = list(range(len(rows)))
        ok = [(x, r) for x, r in zip(xs, rows, strict=True) if r["mean"] is not None]
        if ok:
            ax.errorbar(
                [x for x, _ in ok],
                [r["mean"] for _, r in ok],
                yerr=[r["std"] or 0.0 for _, r in ok],
                marker="o",
                capsize=3,
            )
        gone = [x for x, r in zip(xs, rows, strict=True) if r["mean"] is None and r["collapsed"]]
        if gone:
            floor = ax.get_ylim()[0] if ok else 0.0
            ax.scatter(gone, [floor] * len(gone), marker="x", color="red", label="collapsed")
            ax.legend(fontsize=7)
        ax.set_xticks(xs, [str(r["value"]) for r in rows])
        ax.set_xlabel(axis)
        ax.set_ylabel(ylabels.get(modality, "score"))
        ax.set_title(modality)
    fig.suptitle(f"ablation: {axis} (mean ± std over seeds)")
    fig.tight_layout()
    return _png(fig)

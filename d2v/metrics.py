"""Downstream metrics with each task's official name, and their summary over seeds.

All scores are percent (x100), as the paper reports them. torch, jiwer, scikit-learn and scipy
are imported inside the functions that use them (or only for type checking): the vision path
imports this module for top1 alone, and `glue` only averages JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch and jiwer load only where used: `glue` aggregates JSON without them
    from torch import Tensor

    ArrayLike = np.ndarray | Tensor | Sequence[float]


def top1(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in percent. logits: (N, C), labels: (N,)."""
    return float((logits.argmax(-1) == labels).float().mean().item() * 100.0)


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Mean and sample std (ddof=1; 0 for one value) over seeds."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        return {"mean": math.nan, "std": math.nan}
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if arr.size > 1 else 0.0}


# GLUE tasks (Hugging Face `glue` config names) and the metrics each reports (paper Table 3
# footnote); glue_task_score folds them into the one number the paper averages. MNLI's keys are
# accuracy_m (matched dev) and accuracy_mm (mismatched dev).
GLUE_METRICS: dict[str, tuple[str, ...]] = {
    "mnli": ("accuracy_m", "accuracy_mm"),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "mrpc": ("accuracy", "f1"),
    "qqp": ("accuracy", "f1"),
    "stsb": ("pearson", "spearman"),
    "cola": ("mcc",),
    "sst2": ("accuracy",),
    "wnli": ("accuracy",),
}
# The paper's GLUE average: the eight tasks other than WNLI, MNLI counted once.
GLUE_AVERAGE_TASKS: tuple[str, ...] = ("mnli", "qnli", "rte", "mrpc", "qqp", "stsb", "cola", "sst2")


def wer(refs: list[str], hyps: list[str]) -> float:
    """Corpus word error rate in percent: total word edits / total reference words (jiwer).
    An empty hypothesis counts all its reference's words as deletions."""
    import jiwer

    return _error_rate(refs, hyps, jiwer.wer)


def cer(refs: list[str], hyps: list[str]) -> float:
    """Corpus character error rate in percent (spaces count as characters; jiwer)."""
    import jiwer

    return _error_rate(refs, hyps, jiwer.cer)


def _error_rate(refs: list[str], hyps: list[str], fn: Callable[..., float]) -> float:
    if len(refs) != len(hyps) or not refs:
        raise ValueError(
            f"need as many hypotheses as references, at least one: {len(refs)=}, {len(hyps)=}"
        )
    return float(fn(list(refs), list(hyps))) * 100.0


def accuracy(pred: ArrayLike, labels: ArrayLike) -> float:
    """Accuracy in percent. pred, labels: (N,) class ids."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(_np(labels), _np(pred))) * 100.0


def f1(pred: ArrayLike, labels: ArrayLike) -> float:
    """Binary F1 of the positive class 1, in percent (MRPC, QQP)."""
    from sklearn.metrics import f1_score

    return (
        float(f1_score(_np(labels), _np(pred), pos_label=1, average="binary", zero_division=0))
        * 100.0
    )


def mcc(pred: ArrayLike, labels: ArrayLike) -> float:
    """Matthews correlation x100 (CoLA)."""
    from sklearn.metrics import matthews_corrcoef

    return float(matthews_corrcoef(_np(labels), _np(pred))) * 100.0


def pearson(pred: ArrayLike, target: ArrayLike) -> float:
    """Pearson correlation x100 (STS-B)."""
    from scipy.stats import pearsonr

    return float(pearsonr(_np(pred, as_float=True), _np(target, as_float=True))[0]) * 100.0


def spearman(pred: ArrayLike, target: ArrayLike) -> float:
    """Spearman rank correlation x100 (STS-B)."""
    from scipy.stats import spearmanr

    return float(spearmanr(_np(pred, as_float=True), _np(target, as_float=True))[0]) * 100.0


def glue_task_score(task: str, metrics: dict[str, float]) -> float:
    """The single number per task that the paper averages: MNLI the mean of accuracy_m and
    accuracy_mm, MRPC / QQP the mean of accuracy and f1, STS-B the mean of pearson and spearman,
    CoLA mcc, the others accuracy. metrics: the task's GLUE_METRICS names -> percent."""
    if task not in GLUE_METRICS:
        raise ValueError(f"unknown GLUE task {task!r}: allowed {sorted(GLUE_METRICS)}")
    names = GLUE_METRICS[task]
    missing = [m for m in names if m not in metrics]
    if missing:
        raise ValueError(f"GLUE task {task} needs metrics {list(names)}; missing {missing}")
    return float(np.mean([metrics[m] for m in names]))


def glue_average(task_scores: dict[str, float], require_all: bool = True) -> float:
    """The paper's GLUE average of glue_task_score values over the eight tasks other than WNLI
    (WNLI, if present, is ignored). require_all=False averages the tasks that are there (the
    embedded stand-ins have four); the result is then not comparable with the paper's column."""
    unknown = sorted(set(task_scores) - set(GLUE_METRICS))
    if unknown:
        raise ValueError(f"unknown GLUE tasks {unknown}: allowed {sorted(GLUE_METRICS)}")
    present = [t for t in GLUE_AVERAGE_TASKS if t in task_scores]
    missing = [t for t in GLUE_AVERAGE_TASKS if t not in task_scores]
    if require_all and missing:
        raise ValueError(f"the GLUE average needs all eight tasks; missing {missing}")
    if not present:
        raise ValueError("no GLUE task to average (WNLI is not counted)")
    return float(np.mean([task_scores[t] for t in present]))


def _np(x: ArrayLike, as_float: bool = False) -> np.ndarray:
    """1-D numpy view of a numpy array, a torch tensor or a list."""
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"expected a 1-D array, got shape {arr.shape}")
    return arr.astype(np.float64) if as_float else arr

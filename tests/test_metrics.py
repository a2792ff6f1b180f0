"""Metrics: WER / CER agree with jiwer, GLUE metrics with hand arithmetic, and the GLUE
average reproduces the paper's rows."""

from __future__ import annotations

import math

import jiwer
import numpy as np
import pytest
import torch

from d2v.metrics import (
    GLUE_METRICS,
    accuracy,
    cer,
    f1,
    glue_average,
    glue_task_score,
    mcc,
    pearson,
    spearman,
    summarize,
    top1,
    wer,
)

# (refs, hyps, hand-computed WER in percent)
WER_CASES = [
    (["the cat sat"], ["the bat sat"], 100 * 1 / 3),  # one substitution
    (["a b"], ["a x b"], 100 * 1 / 2),  # one insertion
    (["a b c d"], ["a d"], 100 * 2 / 4),  # two deletions
    (["a b c"], [""], 100.0),  # empty hypothesis: all deletions
    (["a b c", "d e"], ["a x c", ""], 100 * 3 / 5),  # corpus: edits / words, not mean of rates
    (["a b", "c"], ["a b", "c"], 0.0),
]
# (refs, hyps, hand-computed CER in percent; spaces are characters)
CER_CASES = [
    (["abc"], ["abx"], 100 * 1 / 3),
    (["hello world"], ["helo world"], 100 * 1 / 11),
    (["ab"], [""], 100.0),
    (["abc", "de"], ["abcd", "d"], 100 * 2 / 5),  # one insertion + one deletion over 5 chars
]


@pytest.mark.parametrize(("refs", "hyps", "hand"), WER_CASES)
def test_wer_agrees_with_jiwer(refs: list[str], hyps: list[str], hand: float) -> None:
    assert wer(refs, hyps) == pytest.approx(hand)
    assert wer(refs, hyps) == pytest.approx(100 * jiwer.wer(refs, hyps))


@pytest.mark.parametrize(("refs", "hyps", "hand"), CER_CASES)
def test_cer_agrees_with_jiwer(refs: list[str], hyps: list[str], hand: float) -> None:
    assert cer(refs, hyps) == pytest.approx(hand)
    assert cer(refs, hyps) == pytest.approx(100 * jiwer.cer(refs, hyps))


def test_error_rate_needs_matching_lists() -> None:
    with pytest.raises(ValueError, match="as many"):
        wer(["a b"], [])


def test_classification_metrics_by_hand() -> None:
    pred = np.array([1, 1, 0, 1, 0])
    labels = np.array([1, 0, 0, 1, 1])
    # 3 of 5 right
    assert accuracy(pred, labels) == pytest.approx(60.0)
    # TP = 2 (items 0, 3), FP = 1 (item 1), FN = 1 (item 4), TN = 1 (item 2)
    # precision = recall = 2/3, F1 = 2/3
    assert f1(pred, labels) == pytest.approx(100 * 2 / 3)
    # MCC = (TP TN - FP FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2 - 1) / sqrt(3*3*2*2) = 1/6
    assert mcc(pred, labels) == pytest.approx(100 / 6)
    # torch inputs give the same
    assert f1(torch.tensor(pred), torch.tensor(labels)) == pytest.approx(100 * 2 / 3)
    # F1 is of class 1: swapping the classes changes it (TP = 1, FP = 1, FN = 1 -> 1/2)
    assert f1(1 - pred, 1 - labels) == pytest.approx(50.0)


def test_correlations_by_hand() -> None:
    # x = [1, 2, 3], y = [1, 2, 4]: dx = [-1, 0, 1], dy = [-4/3, -1/3, 5/3]
    # sum dx dy = 3, sum dx^2 = 2, sum dy^2 = 42/9 -> r = 3 / sqrt(2 * 42/9)
    r = 3 / math.sqrt(2 * 42 / 9)
    assert pearson(np.array([1.0, 2.0, 3.0]), torch.tensor([1.0, 2.0, 4.0])) == pytest.approx(
        100 * r
    )
    # ranks [1, 2, 3, 4] vs [1, 3, 2, 4]: sum d^2 = 2, rho = 1 - 6 * 2 / (4 * (16 - 1)) = 0.8
    assert spearman([1, 2, 3, 4], [10, 30, 20, 40]) == pytest.approx(80.0)


def test_glue_task_score() -> None:
    assert glue_task_score("mnli", {"accuracy_m": 83.2, "accuracy_mm": 83.0}) == pytest.approx(83.1)
    assert glue_task_score("mrpc", {"accuracy": 88.0, "f1": 92.0}) == pytest.approx(90.0)
    assert glue_task_score("qqp", {"accuracy": 90.0, "f1": 87.0}) == pytest.approx(88.5)
    assert glue_task_score("stsb", {"pearson": 87.0, "spearman": 88.0}) == pytest.approx(87.5)
    assert glue_task_score("cola", {"mcc": 62.2, "accuracy": 99.0}) == pytest.approx(62.2)
    assert glue_task_score("sst2", {"accuracy": 91.8}) == pytest.approx(91.8)
    with pytest.raises(ValueError, match="f1"):
        glue_task_score("mrpc", {"accuracy": 88.0})
    with pytest.raises(ValueError, match="unknown GLUE task"):
        glue_task_score("squad", {"accuracy": 88.0})
    assert set(GLUE_METRICS) >= {"mnli", "qnli", "rte", "mrpc", "qqp", "stsb", "cola", "sst2"}


# PAPER.md's GLUE rows: MNLI m/mm, QNLI, RTE, MRPC, QQP, STS-B, CoLA, SST-2, printed average
PAPER_ROWS = {
    "roberta": ((84.1, 83.9), 90.4, 69.3, 89.0, 89.3, 88.9, 56.8, 92.3, 82.5),
    "data2vec": ((83.2, 83.0), 90.9, 67.0, 90.2, 89.1, 87.2, 62.2, 91.8, 82.7),
    "span": ((82.8, 83.4), 91.1, 69.9, 90.0, 89.0, 87.7, 60.3, 92.4, 82.9),
}


def row_scores(row: tuple) -> dict[str, float]:
    (m, mm), *rest, _ = row
    names = ("qnli", "rte", "mrpc", "qqp", "stsb", "cola", "sst2")
    mnli = glue_task_score("mnli", {"accuracy_m": m, "accuracy_mm": mm})
    return {"mnli": mnli, **dict(zip(names, rest, strict=True))}


@pytest.mark.parametrize("name", sorted(PAPER_ROWS))
def test_glue_average_reproduces_paper_rows(name: str) -> None:
    # e.g. data2vec: (83.1 + 90.9 + 67.0 + 90.2 + 89.1 + 87.2 + 62.2 + 91.8) / 8 = 82.6875
    row = PAPER_ROWS[name]
    scores = row_scores(row)
    assert round(glue_average(scores), 1) == row[-1]
    # WNLI is not part of the average
    assert glue_average({**scores, "wnli": 56.3}) == pytest.approx(glue_average(scores))


def test_glue_average_counts_mnli_once() -> None:
    """Counting matched and mismatched as two tasks (9 values) misses the RoBERTa row."""
    (m, mm), *rest, printed = PAPER_ROWS["roberta"]
    assert round(sum([m, mm, *rest]) / 9, 1) != printed
    assert round(glue_average(row_scores(PAPER_ROWS["roberta"])), 1) == printed


def test_glue_average_missing_tasks() -> None:
    partial = {"sst2": 90.0, "cola": 50.0, "mrpc": 80.0, "stsb": 70.0}
    with pytest.raises(ValueError, match="mnli.*qnli.*rte.*qqp"):
        glue_average(partial)
    assert glue_average(partial, require_all=False) == pytest.approx(72.5)  # 290 / 4
    with pytest.raises(ValueError, match="unknown"):
        glue_average({"sst-2": 90.0}, require_all=False)


def test_existing_metrics_unchanged() -> None:
    logits = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert top1(logits, torch.tensor([1, 0, 0])) == pytest.approx(100 * 2 / 3)
    assert summarize([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(math.sqrt(2))}

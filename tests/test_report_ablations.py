"""The report's Ablations section from a known MLflow store: per-axis tables beside the paper's
numbers (paper scale), the trend in words where ours disagrees, collapsed cells flagged, and
its figures loading in headless Chromium with a natural size > 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from d2v.report import build_report
from tests.helpers import image_sizes

# (modality, K, sublayer, seed, value or None for collapsed); defaults K=4 / ffn
VISION = [(k, "ffn", s, v) for k, vals in ((1, (60.0, 62.0)), (4, (66.0, 66.5))) for s, v in
          enumerate(vals)] + [(4, "attn", 0, None), (4, "attn", 1, None)]  # fmt: skip
# speech (CER, lower is better): K = 1 better than K = 3, a disagreement with the paper
SPEECH = [(k, "ffn", s, v) for k, vals in ((1, (40.0, 41.0)), (3, (45.0, 46.0))) for s, v in
          enumerate(vals)] + [(3, "attn", 0, 70.0), (3, "attn", 1, 72.0)]  # fmt: skip
# text (sst2 probe accuracy): every cell within a point of the majority class, 50.9
TEXT = [(k, "ffn", s, v) for k, vals in ((1, (51.2, 50.6)), (3, (50.9, 51.5))) for s, v in
        enumerate(vals)]  # fmt: skip


def _run(client, exp: str, name: str, tags: dict, parent: str | None = None) -> str:
    tags = {"mlflow.runName": name, **tags}
    if parent:
        tags["mlflow.parentRunId"] = parent
    return client.create_run(exp, tags={k: str(v) for k, v in tags.items()}).info.run_id


def _grid(
    client, exp: str, modality: str, cells: list, default_k: int, direction: str, objective: str
) -> None:
    block = f"pretrain.{modality}.v2.targets"
    tags = {"stage": "ablate", "modality": modality}
    parent = _run(client, exp, f"ablate/{modality}", tags)
    for k, v in {"design": "one_at_a_time", "direction": direction, "objective": objective,
                 "default.top_k": default_k, "default.sublayer": "ffn",
                 "param.top_k": f"{block}.top_k", "param.sublayer": f"{block}.sublayer"}.items():  # fmt: skip
        client.log_param(parent, f"ablate.{k}", str(v))
    for i, (k, sub, seed, value) in enumerate(cells):
        state = "PRUNED" if value is None else "COMPLETE"
        child = _run(client, exp, f"ablate/{modality}/trial{i}", {**tags, "trial_number": i,
                     "state": state, "collapsed": str(value is None).lower()}, parent)  # fmt: skip
        for key, x in ((f"{block}.top_k", k), (f"{block}.sublayer", sub), ("seed", seed)):
            client.log_param(child, key, str(x))
        if value is not None:
            client.log_metric(child, "value", value)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mlflow.tracking import MlflowClient

    tmp = tmp_path_factory.mktemp("ablate-store")
    uri = f"sqlite:///{tmp}/mlruns.db"
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("d2v", artifact_location=(tmp / "art").as_uri())
    _grid(client, exp, "vision", VISION, 4, "maximize", "linear probe top1 on imagenet")
    _grid(client, exp, "speech", SPEECH, 3, "minimize", "linear probe cer on librispeech")
    _grid(client, exp, "text", TEXT, 3, "maximize", "linear probe score on sst2")
    evaluate = _run(client, exp, "evaluate/sst2", {"stage": "evaluate", "task": "sst2"})
    client.log_metric(evaluate, "chance_accuracy", 50.9)
    return build_report(uri, "d2v", tmp / "out")


def test_ablation_tables_beside_the_paper_with_trends_in_words(report: Path) -> None:
    md = report.read_text()
    section = md.split("\n## Ablations")[1].split("\n## ")[0]
    k = section.split("### top_k")[1].split("### sublayer")[0]
    assert "| vision | 1 | 61.00 ± 1.41 (n=2) | worst in every modality |" in k
    assert "| vision | 4 | 66.25 ± 0.35 (n=2) |" in k
    assert "vision: K-averaging beats K = 1" in k
    assert "speech: Disagrees with the paper: K = 1 (40.50 ± 0.71 (n=2))" in k
    # a grid whose probe reads nothing is flagged, not ranked (vision's chance was never logged)
    assert "text: At chance level in every cell (50.90)" in k
    assert "vision: At chance" not in section and "speech: At chance" not in section
    sub = section.split("### sublayer")[1]
    assert "paper scale: Table 5" in sub and "| speech | ffn | 45.50 ± 0.71 (n=2) | 13.1 |" in sub
    assert "| vision | attn | collapsed (2/2) |  |" in sub  # Table 5 is speech's alone
    assert "vision: Ordering ffn > attn matches Table 5's." in sub
    assert "figures/ablate_top_k.png" in section and "figures/ablate_sublayer.png" in section


def test_ablation_figures_load_in_chromium(report: Path, tmp_path: Path) -> None:
    dims = image_sizes(report.with_suffix(".html"), tmp_path, "ablation")
    assert len(dims) == 2 and all(w > 0 and h > 0 for w, h in dims)


def test_a_grid_still_running_is_not_read_as_a_trend() -> None:
    """Cells not yet finished are neither collapsed nor an ordering."""
    from d2v.report.ablations import verdict

    def row(value: object, mean: float | None, collapsed: int = 0) -> dict:
        return {"value": value, "mean": mean, "std": None, "n": int(mean is not None),
                "cells": 1, "collapsed": collapsed}  # fmt: skip

    k = verdict("top_k", [row(1, None), row(3, 58.0)], "maximize")
    assert "no finished cell" in k and "collapsed" not in k
    assert "K = 1 collapsed" in verdict("top_k", [row(1, None, 3), row(3, 58.0)], "maximize")
    sub = verdict("sublayer", [row("attn", None), row("ffn", 58.0)], "maximize")
    assert "Fewer than two sublayers" in sub
    dead = verdict("sublayer", [row("attn", None, 3), row("ffn", None, 3)], "maximize")
    assert dead.startswith("Every sublayer's cells collapsed")


def seeded(value: object, mean: float, std: float) -> dict:
    """An axis value's summary over 3 finished, uncollapsed seeds."""
    return {"value": value, "mean": mean, "std": std, "n": 3, "cells": 3, "collapsed": 0}


def test_sublayers_and_norm_within_the_seeds_spread_are_no_trend() -> None:
    from d2v.report.ablations import verdict

    sub = [seeded("attn", 58.17, 1.0), seeded("ffn", 58.13, 1.16), seeded("block", 58.29, 1.34)]
    assert verdict("sublayer", sub, "maximize").startswith("No ordering beyond the spread")
    apart = [seeded("attn", 50.0, 1.0), seeded("ffn", 58.0, 1.0)]
    assert "matches Table 5" in verdict("sublayer", apart, "maximize")
    norm = [seeded("layer", 58.13, 1.16), seeded("none", 57.94, 0.42)]
    assert verdict("norm", norm, "maximize").startswith("No difference beyond the spread")


def test_table5_claims_are_each_checked_against_the_spread() -> None:
    """The embedded vision grid's case: ffn_res edges ffn within the spread, attn clearly worst."""
    from d2v.report.ablations import verdict

    close = [seeded("attn", 70.01, 0.36), seeded("ffn", 71.60, 0.3704), seeded("ffn_res", 72.34, 0.25),
             seeded("block", 72.24, 0.54)]  # fmt: skip
    words = verdict("sublayer", close, "maximize")
    assert words.startswith("Ordering ffn_res > block > ffn > attn (Table 5: ffn > block")
    assert "the FFN output is within the spread of the best (ffn_res" in words
    assert "the attention output is worst beyond the spread, as in Table 5" in words
    far = [seeded("attn", 70.0, 0.3), seeded("ffn", 71.0, 0.3), seeded("block", 74.0, 0.3)]
    words = verdict("sublayer", far, "maximize")
    assert "the best target here is block, not the FFN output" in words
    assert "the attention output is worst beyond the spread" in words
    flipped = [seeded("attn", 74.0, 0.3), seeded("ffn", 75.0, 0.3), seeded("block", 70.0, 0.3)]
    assert "the worst is block, not the attention output" in verdict(
        "sublayer", flipped, "maximize"
    )


def test_a_gap_within_twice_the_spread_is_no_trend_for_k() -> None:
    """The headline's rule (2x the larger std), not one std: vision's K = 1 72.37 +- 0.74 vs
    K = 4 71.60 +- 0.37 is no disagreement."""
    from d2v.report.ablations import _paper_cell, verdict

    k = [seeded(1, 72.37, 0.74), seeded(2, 71.14, 1.12), seeded(4, 71.60, 0.37)]
    assert verdict("top_k", k, "maximize").startswith("No difference beyond the spread")
    assert "Disagrees" in verdict("top_k", [seeded(1, 72.4, 0.3), seeded(4, 71.0, 0.3)], "maximize")
    assert _paper_cell("speech", "norm", "none") == "speech collapses"
    assert _paper_cell("vision", "norm", "none") == ""  # the claim is speech's alone

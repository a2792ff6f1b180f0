"""Ablation grids: exactly the cells the yaml implies (a re-run adds none), the per-axis means
and stds against hand arithmetic, collapsed cells kept and flagged, bad params refused before
any compute."""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest
import yaml

from d2v.ablation.aggregate import axis_stats, fmt_stat
from d2v.ablation.grid import cells, defaults, grid_points
from d2v.ablation.study import ablation_params, enqueue_cells, run_ablation, summarize
from d2v.cli import main
from d2v.config import Design, Modality, to_dict
from tests.helpers import V1, tiny_params

FACTORIAL = [
    "ablate.vision.design=factorial",
    "ablate.vision.top_k=[1,2]",
    "ablate.vision.sublayer=[ffn,attn]",
    "ablate.vision.norm=[]",
    "ablate.vision.seeds=[0,1]",
    'ablate.vision.overrides=["pretrain.vision.v1.optim.steps=4",'
    '"pretrain.vision.v1.optim.warmup_steps=1","pretrain.vision.v1.optim.batch_size=16",'
    '"pretrain.vision.checkpoint_every=1000"]',
    "ablate.vision.probe_label_fraction=0.1",
    "finetune.imagenet.probe.epochs=5",
]


@pytest.mark.slow
def test_grid_of_2x2_cells_and_2_seeds_runs_exactly_8_trials_and_a_rerun_adds_none(
    prepared_vision: Path, tmp_path: Path
) -> None:
    params = tiny_params(f"tracking.uri=sqlite:///{tmp_path}/mlruns.db", *V1, *FACTORIAL)
    storage = f"sqlite:///{tmp_path}/ablate.db"
    out = tmp_path / "ablate.json"
    first = run_ablation(params, Modality.vision, prepared_vision, out, storage=storage)
    assert first["n_cells"] == 8 and first["states"]["COMPLETE"] == 8
    points = {(c["top_k"], c["sublayer"], c["seed"]) for c in first["cells"]}
    assert points == {(k, s, seed) for k in (1, 2) for s in ("ffn", "attn") for seed in (0, 1)}
    assert [r["n"] for r in first["stats"]["top_k"]] == [2, 2]
    study = optuna.load_study(study_name=first["study_name"], storage=storage)
    done = {t.number: t.datetime_complete for t in study.trials}
    again = run_ablation(params, Modality.vision, prepared_vision, out, storage=storage)
    study = optuna.load_study(study_name=first["study_name"], storage=storage)
    assert len(study.trials) == 8 and {t.number: t.datetime_complete for t in study.trials} == done
    assert again["stats"] == first["stats"]


def test_one_at_a_time_cells_and_resume_enqueues_only_the_missing(tmp_path: Path) -> None:
    params = tiny_params(
        *V1, "ablate.vision.top_k=[1,2]", "ablate.vision.sublayer=[attn]", "ablate.vision.norm=[]"
    )
    cfg, default = params.ablate["vision"], defaults(params, Modality.vision)
    assert default == {"top_k": 2, "sublayer": "ffn", "norm": "layer"}  # v1 micro: K=6/12*4
    assert cells(cfg, default) == [
        {"top_k": 2, "sublayer": "ffn"},
        {"top_k": 1, "sublayer": "ffn"},
        {"top_k": 2, "sublayer": "attn"},
    ]
    points = grid_points(cfg, default)
    assert len(points) == 3 * len(cfg.seeds)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db")
    assert enqueue_cells(study, points[:4]) == 4
    assert enqueue_cells(study, points) == len(points) - 4
    assert enqueue_cells(study, points) == 0 and len(study.trials) == len(points)


def _cell(k: int, sub: str, seed: int, value: float | None, collapsed: bool = False) -> dict:
    state = "PRUNED" if collapsed else "COMPLETE"
    return {"top_k": k, "sublayer": sub, "seed": seed, "value": value, "state": state,
            "collapsed": collapsed}  # fmt: skip


def test_axis_means_and_stds_by_hand() -> None:
    default = {"top_k": 4, "sublayer": "ffn"}
    grid = [
        _cell(4, "ffn", 0, 60.0), _cell(4, "ffn", 1, 62.0), _cell(4, "ffn", 2, 67.0),
        _cell(1, "ffn", 0, 50.0), _cell(1, "ffn", 1, 54.0), _cell(1, "ffn", 2, 52.0),
        _cell(4, "attn", 0, None, True), _cell(4, "attn", 1, 30.0), _cell(4, "attn", 2, 31.0),
        _cell(1, "attn", 0, 99.0),  # off the one-at-a-time slices: counted in factorial only
    ]  # fmt: skip
    axes = {"top_k": [1, 4], "sublayer": ["attn", "ffn"]}
    ofat = axis_stats(grid, axes, default, Design.one_at_a_time)
    k1, k4 = ofat["top_k"]
    assert (k1["mean"], k1["std"], k1["n"]) == (52.0, 2.0, 3)  # 50 54 52: mean 52, s = 2
    assert k4["mean"] == 63.0 and k4["std"] == pytest.approx(3.605551, abs=1e-6)  # sqrt(13)
    attn = ofat["sublayer"][0]
    assert (attn["mean"], attn["std"], attn["n"], attn["collapsed"]) == (30.5, 0.5**0.5, 2, 1)
    fact = axis_stats(grid, axes, default, Design.factorial)
    # K = 1, seed 0: mean of ffn 50 and attn 99 = 74.5; seeds 1, 2 only ffn: 54, 52
    assert fact["top_k"][0]["per_seed"] == {0: 74.5, 1: 54.0, 2: 52.0}
    assert fact["top_k"][0]["mean"] == pytest.approx(statistics.fmean([74.5, 54.0, 52.0]))


def test_collapsed_cell_is_kept_and_flagged(tmp_path: Path) -> None:
    params = tiny_params(*V1, *FACTORIAL)
    params = ablation_params(params, Modality.vision)
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", direction="maximize")
    enqueue_cells(study, grid_points(params.ablate["vision"], defaults(params, Modality.vision)))
    for i in range(len(study.get_trials())):
        trial = optuna.Trial(study, study._pop_waiting_trial_id())
        trial.suggest_categorical("top_k", [1, 2])
        trial.suggest_categorical("sublayer", ["ffn", "attn"])
        trial.suggest_categorical("seed", [0, 1])
        if trial.params["sublayer"] == "attn" and trial.params["top_k"] == 1:
            trial.set_user_attr("collapsed", True)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, 10.0 + i)
    out = summarize(study, params, Modality.vision)
    gone = [c for c in out["cells"] if c["collapsed"]]
    assert len(out["cells"]) == 8 and len(gone) == 2
    assert all(c["state"] == "PRUNED" and c["value"] is None for c in gone)
    attn = next(r for r in out["stats"]["sublayer"] if r["value"] == "attn")
    assert attn["collapsed"] == 2 and attn["cells"] == 4 and attn["n"] == 2
    assert fmt_stat({**attn, "mean": None}) == "collapsed (2/4)"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("ablate.vision.top_k=[1,9]", "ablate.vision.top_k[1] = 9: allowed [1, depth=4]"),
        ("ablate.vision.sublayer=[mlp]", "ablate.vision.sublayer[0] = 'mlp': allowed one of"),
        ("ablate.vision.seeds=[0,0]", "ablate.vision.seeds = [0, 0]: allowed a non-empty"),
        (
            'ablate.vision.overrides=["pretrain.vision.v2.optim.steps=0"]',
            "pretrain.vision.v2.optim.steps = 0: allowed >= 1",
        ),
    ],
)
def test_invalid_ablate_params_exit_2_before_any_compute(
    override: str, named: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    data = to_dict(tiny_params())
    ablate = data["ablate"]["vision"]
    key, value = override.removeprefix("ablate.vision.").split("=", 1)
    ablate[key] = yaml.safe_load(value.replace("[mlp]", "['mlp']"))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["ablate", "vision"])
    assert e.value.code == 2
    assert named in capsys.readouterr().err
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()

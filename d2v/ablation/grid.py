"""An ablation's cells: the axes' values around the method's default targets, times the seeds,
and the grid study (a categorical sweep under Optuna's GridSampler) that runs them."""

from __future__ import annotations

import itertools
from typing import Any

from d2v.config import AblateConfig, Design, Modality, Params, SweepConfig, SweepDim, to_dict

AXES = ("top_k", "sublayer", "norm")  # the report's order
SEED = "seed"


def param_paths(params: Params, modality: Modality) -> dict[str, str]:
    """Axis -> the params path it sets: the targets block of the modality's method in use."""
    method = getattr(params.pretrain, modality.value).method.value
    block = f"pretrain.{modality.value}.{method}.targets"
    return {**{a: f"{block}.{a}" for a in AXES}, SEED: SEED}


def defaults(params: Params, modality: Modality) -> dict[str, Any]:
    """The method's own targets (K resolved to the model depth) as plain values: the default
    cell that a one-at-a-time design varies from."""
    from d2v.targets import resolve_top_k  # torch: the report reads AXES and SEED without it

    pre = getattr(params.pretrain, modality.value)
    t = pre.active.targets
    k = resolve_top_k(t.top_k, modality, params.model.depth, pre.method)
    return {"top_k": k, "sublayer": t.sublayer.value, "norm": t.norm.value}


def axis_values(cfg: AblateConfig, default: dict[str, Any]) -> dict[str, list]:
    """Each varied axis's values as plain data; one-at-a-time designs add the default's."""
    out = {}
    for axis, values in cfg.axes().items():
        vals = to_dict(values)
        if cfg.design == Design.one_at_a_time and default[axis] not in vals:
            vals = [default[axis], *vals]
        out[axis] = sorted(vals) if axis == "top_k" else vals
    return out


def cells(cfg: AblateConfig, default: dict[str, Any]) -> list[dict[str, Any]]:
    """The distinct cells (without seeds): every combination (factorial), or the default cell
    and each axis's other values with the rest at the default (one at a time)."""
    axes = axis_values(cfg, default)
    if cfg.design == Design.factorial:
        return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    base = {a: default[a] for a in axes}
    out = [base]
    for axis, values in axes.items():
        out += [{**base, axis: v} for v in values if v != base[axis]]
    return out


def grid_points(cfg: AblateConfig, default: dict[str, Any]) -> list[dict[str, Any]]:
    """Every trial's params: each cell once per seed (the study's exact size)."""
    return [{**c, SEED: s} for s in cfg.seeds for c in cells(cfg, default)]


def study_config(cfg: AblateConfig, params: Params, modality: Modality) -> SweepConfig:
    """The ablation as a sweep: categorical dims over the axes and seeds, the grid sampler, no
    pruning (a cell runs its whole budget), one probe at the end."""
    paths = param_paths(params, modality)
    space = {
        a: SweepDim(param=paths[a], scale="categorical", choices=v)
        for a, v in axis_values(cfg, defaults(params, modality)).items()
    }
    space[SEED] = SweepDim(param=SEED, scale="categorical", choices=list(cfg.seeds))
    return SweepConfig(
        task=cfg.task,
        metric=cfg.metric,
        n_trials=len(grid_points(cfg, defaults(params, modality))),
        direction=cfg.direction,
        storage=cfg.storage,
        study_name=cfg.study_name,
        sampler="grid",
        pruner="none",
        seed=cfg.probe_seed,
        report_every=2**31 - 1,  # no intermediate probes: they cost and nothing prunes
        heartbeat_s=cfg.heartbeat_s,
        grace_s=cfg.grace_s,
        probe_label_fraction=cfg.probe_label_fraction,
        overrides=list(cfg.overrides),
        space=space,
    )

"""sweep@<modality>: an Optuna study over tau, mask rate and K (params sweep.<modality>), and the
study machinery the ablation grid shares: create or resume the study and run its workers, or
(`--worker`) be one of them."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from d2v.config import ConfigError, Modality, Params
from d2v.params_io import read_params


def check_study_args(configs: Mapping[str, Any], args: argparse.Namespace, stage: str) -> None:
    m = args.modality.value
    if m not in configs:
        raise ConfigError(f"no {stage} study {stage}.{m}: allowed {', '.join(sorted(configs))}")
    if args.workers < 1:
        raise ConfigError(f"invalid --workers {args.workers}: allowed >= 1")


def run_study_command(
    params: Params,
    study_params: Params,
    args: argparse.Namespace,
    stage: str,
    run_study: Callable[..., Any],
    default_storage: str,
) -> None:
    """`d2v sweep <m>` (an Optuna search) or `d2v ablate <m>` (a grid study run as a sweep over
    its cells, `study_params` its cells as a sweep config)."""
    from d2v.sweep import run_worker, study_name

    m: Modality = args.modality
    configs = params.sweep if stage == "sweep" else params.ablate
    prepared = Path("data/prepared") / m.value
    if args.worker:  # one of `--workers N` processes, or a worker joining from another machine
        import optuna

        storage = args.storage or configs[m.value].storage or default_storage
        name = study_name(study_params.sweep[m.value], study_params, m)
        parent = optuna.load_study(study_name=name, storage=storage).user_attrs.get(
            "mlflow_parent_run_id"
        )
        run_worker(study_params, m, prepared, storage, name, parent, stage=stage)
        return
    run_study(
        params,
        m,
        prepared,
        Path("metrics") / stage / f"{m.value}.json",
        storage=args.storage,
        workers=args.workers,
        params_path=Path(args.params),
    )


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v sweep <modality>` (the stage sweep@<modality>)."""
    from d2v.sweep import DEFAULT_STORAGE, run_sweep

    params = read_params(args.params)  # validated before any compute
    check_study_args(params.sweep, args, "sweep")
    run_study_command(params, params, args, "sweep", run_sweep, DEFAULT_STORAGE)

"""ablate@<modality>: the paper's ablations (top-K, target sublayer, target norm) as a seeded grid
study (params ablate.<modality>), run through the sweep's study machinery."""

from __future__ import annotations

import argparse

from d2v.params_io import read_params
from d2v.runs.sweep import check_study_args, run_study_command


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v ablate <modality>` (the stage ablate@<modality>)."""
    from d2v.ablation.study import DEFAULT_STORAGE, ablation_params, run_ablation

    params = read_params(args.params)  # validated before any compute
    check_study_args(params.ablate, args, "ablate")
    study_params = ablation_params(params, args.modality)
    run_study_command(params, study_params, args, "ablate", run_ablation, DEFAULT_STORAGE)

"""prepare@<modality>: decode and normalize raw data into shards that load fast (each
modality's `prepare` in d2v/registry.py)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from d2v.config import Modality, Params
from d2v.registry import resolve
from d2v.runs.data_step import run_data_step

log = logging.getLogger(__name__)


def run_prepare(params: Params, modality: Modality, raw_dir: Path, out_dir: Path) -> dict:
    step = resolve(modality, "prepare")
    result = run_data_step(params, modality, "prepare", step, raw_dir, out_dir)
    log.info("prepared %s: %d skipped", out_dir, result.metrics["skipped"])
    return result.stats


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v prepare <modality>` (the stage prepare@<modality>)."""
    from d2v.params_io import read_params

    params = read_params(args.params)  # validated before any compute
    m = args.modality.value
    run_prepare(params, args.modality, Path("data/raw") / m, Path("data/prepared") / m)

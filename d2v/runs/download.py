"""download@<modality>: fetch or generate raw data in the on-disk layout the prepare stage reads
(each modality's `download` in d2v/registry.py)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from d2v.config import Modality, Params
from d2v.registry import resolve
from d2v.runs.data_step import run_data_step

log = logging.getLogger(__name__)


def run_download(params: Params, modality: Modality, out_dir: Path) -> dict:
    result = run_data_step(params, modality, "download", resolve(modality, "download"), out_dir)
    log.info("wrote %s", out_dir)
    return result.stats


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v download <modality>` (the stage download@<modality>)."""
    from d2v.params_io import read_params

    params = read_params(args.params)  # validated before any compute
    run_download(params, args.modality, Path("data/raw") / args.modality.value)

"""report: the comparison report, built from the MLflow store alone (reports/)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from d2v.config import TrackingConfig
from d2v.failures import about
from d2v.params_io import read_params

log = logging.getLogger(__name__)


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v report` (the stage report)."""
    from d2v.report import build_report
    from d2v.tracking import check_reachable, tracking_uri

    cfg = read_params(args.params).tracking if Path(args.params).exists() else TrackingConfig()
    uri = tracking_uri(cfg)
    check_reachable(uri)
    with about(f"MLflow tracking store {uri}"):
        path = build_report(
            uri,
            args.experiment or cfg.experiment,
            Path(args.out),
            args.filter,
            args.compare,
            Path(args.eval_dir),
            Path(args.glue),
        )
    log.info("report: %s", path)

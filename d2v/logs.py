"""Logging set-up for stage processes: one format, rank-aware, quiet third-party chatter."""

from __future__ import annotations

import logging
import os
import warnings


def setup_logging(level: int = logging.INFO) -> None:
    rank = os.environ.get("RANK", "0")
    logging.basicConfig(
        level=level if rank == "0" else logging.WARNING,
        format=f"%(asctime)s [rank {rank}] %(name)s: %(message)s",
        force=True,
    )
    for noisy in ("DeepSpeed", "deepspeed", "alembic", "mlflow", "urllib3", "git"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")

"""Process-group set-up: the same code path for one plain `python` process, `torchrun` and the
`deepspeed` launcher, on CPU (gloo) or GPU (nccl)."""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The longest a first build of DeepSpeed's CPU comm op takes here is ~2 min: a build lock older
# than this was left by a killed build, and torch would wait on it forever, silently.
STALE_BUILD_LOCK_S = 600.0


def check_build_locks(now: float | None = None) -> list[Path]:
    """Torch-extension build locks (`<TORCH_EXTENSIONS_DIR>/<op>/lock`): each is named in a
    warning at once (torch waits on it without a word); those older than STALE_BUILD_LOCK_S are
    removed. Returns the removed ones."""
    env = os.environ.get("TORCH_EXTENSIONS_DIR")
    root = Path(env) if env else Path.home() / ".cache" / "torch_extensions"
    now = time.time() if now is None else now
    removed = []
    for lock in sorted([*root.glob("*/lock"), *root.glob("*/*/lock")]):
        age = now - lock.stat().st_mtime
        if age > STALE_BUILD_LOCK_S:
            log.warning(
                "removing stale build lock %s (%.0f s old: a killed build left it)", lock, age
            )
            lock.unlink(missing_ok=True)
            removed.append(lock)
        else:
            log.warning(
                "build lock %s (%.0f s old): waiting for the build that holds it; if none runs,"
                " delete the file",
                lock,
                age,
            )
    return removed


def init_distributed() -> DistInfo:
    """Join (or, as a lone process, create) the default process group through DeepSpeed.

    Without launcher variables DeepSpeed would try MPI discovery; a lone process gets rank 0 of 1
    on a free loopback port instead.
    """
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    if "RANK" not in os.environ:
        os.environ.update(
            RANK="0",
            WORLD_SIZE="1",
            LOCAL_RANK="0",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(free_port()),
        )
    import deepspeed
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
        if os.environ.get("WORLD_SIZE") == "1":
            skip_shm_comm_op()
    check_build_locks()
    if not dist.is_initialized():
        deepspeed.init_distributed(
            dist_backend="nccl" if device.type == "cuda" else "gloo", verbose=False
        )
    info = DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, device)
    log.info("rank %d of %d on %s", info.rank, info.world_size, device)
    return info


# DeepSpeed's CPU backend compiles a shared-memory all-reduce op at its first init: 35 s on 2
# cores in every new venv (the build is keyed on the venv's path, and each venv's build replaces the
# last one's), ~1.5 s to load after. It serves several ranks on one host; a lone process has none.
SHM_COMM_OP = "deepspeed_shm_comm"


def skip_shm_comm_op() -> None:
    """Mark DeepSpeed's CPU shared-memory comm op unavailable, so that the next
    `deepspeed.init_distributed` neither builds nor loads it (its collectives then go through
    torch.distributed, which a world of one rank never calls across processes)."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__[SHM_COMM_OP] = False


def bf16_supported(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_bf16_supported()

"""Periodic checkpoints of a pretraining run (DeepSpeed engine + EMA teacher + loop state), so a
killed run resumes from the last one.

Each checkpoint is a tag folder `step<N>`. The teacher and loop state are written (atomically)
before the engine's files; DeepSpeed writes its `latest` pointer last, so `latest` only ever names
a complete checkpoint.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from d2v.atomic import atomic_path
from d2v.data.errors import UNREADABLE, DataError, short
from d2v.teacher import EMATeacher

log = logging.getLogger(__name__)

KEEP = 2  # checkpoints kept on disk


def save_checkpoint(
    engine: Any, teacher: EMATeacher, ckpt_dir: Path, step: int, state: dict[str, Any]
) -> None:
    """Save after `step` updates. `state`: small loop state (collapse strikes, ...)."""
    tag = f"step{step:08d}"
    if dist.get_rank() == 0:
        with atomic_path(ckpt_dir / tag / "teacher.pt") as tmp:
            torch.save({"teacher": teacher.state_dict(), "step": step, "state": state}, tmp)
    dist.barrier()
    engine.save_checkpoint(str(ckpt_dir), tag=tag, client_state={"step": step})
    if dist.get_rank() == 0:
        tags = sorted(p for p in ckpt_dir.glob("step*") if p.is_dir())
        for old in tags[:-KEEP]:
            shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint %s", ckpt_dir / tag)


def load_checkpoint(engine: Any, teacher: EMATeacher, ckpt_dir: Path) -> tuple[int, dict[str, Any]]:
    """Restore the newest checkpoint that loads; returns (steps done, loop state), (0, {}) if none.

    The tag `latest` names is tried first, then the older ones kept: a checkpoint truncated by a
    full disk or a kill while its files were copied is skipped, saying so, for the one before it.
    """
    if not (ckpt_dir / "latest").exists():
        return 0, {}
    latest = (ckpt_dir / "latest").read_text().strip()
    older = sorted((p.name for p in ckpt_dir.glob("step*") if p.is_dir()), reverse=True)
    tags = [latest, *(t for t in older if t < latest)]
    for i, tag in enumerate(tags):
        try:
            return _load_tag(engine, teacher, ckpt_dir, tag)
        except _UNREADABLE as e:
            nxt = f"falling back to {tags[i + 1]}" if i + 1 < len(tags) else "none left"
            log.warning("checkpoint %s unreadable (%s): %s", ckpt_dir / tag, short(e), nxt)
    raise DataError(f"no loadable checkpoint in {ckpt_dir} (tried {', '.join(tags)})")


_UNREADABLE = (*UNREADABLE, OSError)


def _load_tag(
    engine: Any, teacher: EMATeacher, ckpt_dir: Path, tag: str
) -> tuple[int, dict[str, Any]]:
    saved = torch.load(ckpt_dir / tag / "teacher.pt", map_location="cpu", weights_only=False)
    path, client = engine.load_checkpoint(str(ckpt_dir), tag=tag)
    if path is None:
        raise RuntimeError(f"DeepSpeed found no engine state under {tag}")
    teacher.load_state_dict(saved["teacher"])
    step = int(client["step"])
    if saved["step"] != step:
        raise RuntimeError(f"checkpoint {tag}: teacher at step {saved['step']}, engine at {step}")
    log.info("resumed from %s at step %d", ckpt_dir / tag, step)
    return step, saved["state"]

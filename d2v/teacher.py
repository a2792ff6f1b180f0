"""EMA teacher: a deep copy of the student encoder, never trained, always in eval mode, updated in
place as teacher <- tau * teacher + (1 - tau) * student.

Modules listed as `shared` are not copied: the teacher calls the student's own module there (the
paper shares the CNN feature encoder for speech, embeddings and positions for text).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def tau_at(step: int, tau_start: float, tau_end: float, anneal_steps: int) -> float:
    """EMA decay at `step`: linear from tau_start to tau_end over anneal_steps, then constant."""
    if anneal_steps <= 0 or step >= anneal_steps:
        return tau_end
    return tau_start + (tau_end - tau_start) * step / anneal_steps


def _is_zero3(params: Sequence[Tensor]) -> bool:
    return any(hasattr(p, "ds_id") for p in params)


class EMATeacher:
    """Holds the teacher encoder; not an nn.Module so that no engine or optimizer ever sees it."""

    def __init__(self, student: nn.Module, shared: Sequence[str] = ()):
        self.model = copy.deepcopy(student)
        # frozen before sharing: a shared module stays the student's, trained with it
        self.model.requires_grad_(False)
        self.model.eval()
        for name in shared:
            self._share(student, name)
        self.shared = tuple(shared)
        own = {id(p) for name in shared for p in self.model.get_submodule(name).parameters()}
        student_params = dict(student.named_parameters())
        self.names = [n for n, p in self.model.named_parameters() if id(p) not in own]
        self.params = [p for n, p in self.model.named_parameters() if n in self.names]
        for n in self.names:
            if n not in student_params:
                raise KeyError(f"teacher parameter {n} has no student counterpart")

    def _share(self, student: nn.Module, name: str) -> None:
        parent_name, _, attr = name.rpartition(".")
        parent = self.model.get_submodule(parent_name) if parent_name else self.model
        setattr(parent, attr, student.get_submodule(name))

    def to(self, device: torch.device | str) -> EMATeacher:
        self.model.to(device)
        return self

    @torch.no_grad()
    def update(self, student: nn.Module, tau: float) -> None:
        """In-place EMA step with foreach ops; a no-op at tau = 1.

        Under ZeRO-3 the student's parameters are partitioned (shape (0,) outside forward):
        they are gathered, read-only, for the update.
        """
        if tau >= 1.0:
            return
        named = dict(student.named_parameters())
        student_params = [named[n] for n in self.names]
        gather = contextlib.nullcontext()
        if _is_zero3(student_params):
            import deepspeed

            gather = deepspeed.zero.GatheredParameters(student_params, modifier_rank=None)
        with gather:
            src = [p.detach().to(t.dtype) for p, t in zip(student_params, self.params, strict=True)]
            torch._foreach_lerp_(self.params, src, 1.0 - tau)

    def state_dict(self) -> dict[str, Tensor]:
        """The teacher's own parameters and buffers (shared modules belong to the student)."""
        state = self.model.state_dict()
        return {
            k: v for k, v in state.items() if not k.startswith(tuple(f"{s}." for s in self.shared))
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        missing, unexpected = self.model.load_state_dict(state, strict=False)
        own_missing = [k for k in missing if not k.startswith(tuple(f"{s}." for s in self.shared))]
        if own_missing or unexpected:
            raise KeyError(
                f"teacher state mismatch: missing {own_missing}, unexpected {unexpected}"
            )

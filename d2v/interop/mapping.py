"""Moving a state dict between d2v's names and another library's, by an explicit list of name
pairs: every pair's tensor must exist on the source side with exactly the shape the other side
expects, and every tensor the other side needs must be covered. Errors name the first tensor
that does not fit, in one line."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor

from d2v.data.errors import DataError


class InteropError(DataError):
    """A checkpoint or config that does not fit: the message names the tensor or field (the
    CLI exits 2 with it)."""


def convert(
    src: Mapping[str, Tensor],
    pairs: Iterable[tuple[str, str]],
    dst_shapes: Mapping[str, torch.Size],
    src_name: str,
    dst_name: str,
    ignore: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
) -> dict[str, Tensor]:
    """`src` state under the names of `pairs` (src name, dst name) -> the destination's state.

    dst_shapes: every tensor the destination holds and its shape. Source tensors whose name
    contains one of `ignore` may be left unmapped (e.g. HF's pooler, which d2v's encoder does
    not have, or index buffers older checkpoints saved);
    destination tensors in `optional` may have no source (they keep their initial values, e.g.
    a mask embedding the source model never had). A tensor may differ from its counterpart by
    dimensions of size 1 only (HF's CLS token (1, 1, D), d2v's (D,)).
    """
    out: dict[str, Tensor] = {}
    used: set[str] = set()
    for s, d in pairs:
        if d not in dst_shapes:
            raise InteropError(f"{dst_name} has no tensor {d} (for {src_name}'s {s})")
        if s not in src and d in optional:
            continue
        if s not in src:
            raise InteropError(f"{src_name} checkpoint lacks {s} (for {dst_name}'s {d})")
        if _squeezed(src[s].shape) != _squeezed(dst_shapes[d]):
            raise InteropError(
                f"{src_name} tensor {s} has shape {tuple(src[s].shape)}, "
                f"{dst_name}'s {d} needs {tuple(dst_shapes[d])}"
            )
        out[d] = src[s].detach().clone().reshape(dst_shapes[d])
        used.add(s)
    missing = [d for d in dst_shapes if d not in out and d not in optional]
    if missing:
        raise InteropError(f"{dst_name} tensor {missing[0]} has no {src_name} counterpart")
    extra = [s for s in src if s not in used and not any(part in s for part in ignore)]
    if extra:
        raise InteropError(f"{src_name} tensor {extra[0]} has no {dst_name} counterpart")
    return out


def _squeezed(shape: torch.Size) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def shapes(state: Mapping[str, Tensor]) -> dict[str, torch.Size]:
    return {k: v.shape for k, v in state.items()}


def invert(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(b, a) for a, b in pairs]


def load_matching(module: torch.nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    """Load `state` into `module`, every tensor by its own name and exact shape; the first one
    that does not fit is named (e.g. an imported checkpoint against the params' model)."""
    names = [(k, k) for k in state]
    module.load_state_dict(convert(state, names, shapes(module.state_dict()), source, "d2v"))


def load_converted(
    module: torch.nn.Module,
    src: Mapping[str, Tensor],
    pairs: Iterable[tuple[str, str]],
    src_name: str,
    dst_name: str,
    ignore: tuple[str, ...] = (),
    optional: tuple[str, ...] = (),
    keep: tuple[str, ...] = (),
) -> torch.nn.Module:
    """`src` moved into `module` by `pairs` (checked as `convert` does); `module`'s tensors under
    a `keep` prefix (e.g. HF's pooler, no part of d2v's encoder) or in `optional` without a
    source keep their initial values. Returns `module` in eval mode."""
    current = module.state_dict()
    needed = {k: v.shape for k, v in current.items() if not k.startswith(keep)}
    state = convert(src, pairs, needed, src_name, dst_name, ignore=ignore, optional=optional)
    module.load_state_dict({**current, **state}, strict=True)
    return module.eval()


def require_paper_arch(arch: str, family: str) -> None:
    """Export needs the paper's encoder: the generic one has no HF counterpart."""
    if arch != "paper":
        raise InteropError(
            f"model.arch = {arch!r}: only the paper's encoder ({family}) has an HF "
            "counterpart; pretrain with -S model.arch=paper"
        )

"""Is the masked task learnable at all? What trivial predictors reach on the teacher's targets at
the masked positions, beside the student's own R²: copying the nearest visible target, and
interpolating linearly across the masked span; and how much the targets still correlate at the
span's length. A student below its trivial predictors learns less than the input's local
smoothness gives away; trivial predictors near 0 with a student near 0 say the targets carry
nothing the context can predict (speech at the laptop budget, issue 11).

Dimensions: R mask rows, T tokens (h x w patches for images), D width.
Masks: True = masked. Padding masks: True = padding (neither visible nor a target).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from d2v.losses import explained_variance


class Neighbours(NamedTuple):
    """Per position, the nearest visible position before and after it along the last axis
    (-1 / n where there is none)."""

    before: Tensor  # (..., n) long
    after: Tensor  # (..., n) long


def neighbours(visible: Tensor) -> Neighbours:
    """visible: (..., n) bool -> nearest visible index at or before / at or after each position."""
    n = visible.shape[-1]
    idx = torch.arange(n, device=visible.device).expand_as(visible)
    before = torch.where(visible, idx, -1).cummax(-1).values
    after = torch.where(visible, idx, n).flip(-1).cummin(-1).values.flip(-1)
    return Neighbours(before, after)


def _take(y: Tensor, index: Tensor) -> Tensor:
    """y: (R, n, D), index: (R, n) in [0, n) -> (R, n, D)."""
    return y.gather(1, index[..., None].expand(-1, -1, y.shape[-1]))


def copy_and_interp_1d(y: Tensor, visible: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """y: (R, n, D) targets, visible: (R, n) -> (copy, interp) predictions (R, n, D) and where
    they exist (R, n): a row with no visible position predicts nothing."""
    n = y.shape[1]
    nb = neighbours(visible)
    has_b, has_a = nb.before >= 0, nb.after < n
    b, a = nb.before.clamp(0, n - 1), nb.after.clamp(0, n - 1)
    yb, ya = _take(y, b), _take(y, a)
    pos = torch.arange(n, device=y.device)[None].float()
    db, da = pos - nb.before.float(), nb.after.float() - pos
    near_b = (has_b & (~has_a | (db <= da)))[..., None]
    copy = torch.where(near_b, yb, ya)
    w = (db / (db + da).clamp(min=1)).clamp(0, 1)[..., None]  # weight of the one after
    both = (has_b & has_a)[..., None]
    interp = torch.where(both, yb * (1 - w) + ya * w, copy)
    return copy, interp, has_b | has_a


def trivial_predictions(
    y: Tensor, visible: Tensor, grid: tuple[int, int] | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Copy-nearest and interpolation predictions (R, T, D) for every position, and where they
    exist (R, T). `grid` (h, w): images, where both run along rows and along columns and the
    nearer (copy) or the mean of the two (interpolation) is taken."""
    if grid is None:
        return copy_and_interp_1d(y, visible)
    R, T, D = y.shape
    h, w = grid
    rows = copy_and_interp_1d(y.view(R * h, w, D), visible.view(R * h, w))
    cols_y = y.view(R, h, w, D).transpose(1, 2).reshape(R * w, h, D)
    cols_v = visible.view(R, h, w).transpose(1, 2).reshape(R * w, h)
    cols = copy_and_interp_1d(cols_y, cols_v)

    def back(t: Tensor, transposed: bool) -> Tensor:
        if not transposed:
            return t.reshape(R, T, *t.shape[2:])
        return t.reshape(R, w, h, *t.shape[2:]).transpose(1, 2).reshape(R, T, *t.shape[2:])

    (rc, ri, rok), (cc, ci, cok) = (
        tuple(back(t, False) for t in rows),
        tuple(back(t, True) for t in cols),
    )
    # copy: the nearer of the row and column neighbours; interpolation: their mean
    dist_r = _nearest_distance(visible.view(R * h, w)).reshape(R, T)
    dist_c = back(_nearest_distance(cols_v), True)
    use_r = (rok & (~cok | (dist_r <= dist_c)))[..., None]
    copy = torch.where(use_r, rc, cc)
    both = (rok & cok)[..., None]
    interp = torch.where(both, (ri + ci) / 2, torch.where(rok[..., None], ri, ci))
    return copy, interp, rok | cok


def _nearest_distance(visible: Tensor) -> Tensor:
    n = visible.shape[-1]
    nb = neighbours(visible)
    pos = torch.arange(n, device=visible.device)
    db = torch.where(nb.before >= 0, pos - nb.before, n + 1)
    da = torch.where(nb.after < n, nb.after - pos, n + 1)
    return torch.minimum(db, da)


def autocorrelation(y: Tensor, lag: int, padding: Tensor | None = None) -> float:
    """Mean over channels of the correlation of targets `lag` positions apart, over all valid
    pairs. y: (B, T, D), padding: (B, T)."""
    if lag <= 0 or lag >= y.shape[1]:
        return float("nan")
    a, b = y[:, :-lag].float(), y[:, lag:].float()
    ok = torch.ones(a.shape[:2], dtype=torch.bool, device=y.device)
    if padding is not None:
        ok = ~padding[:, :-lag] & ~padding[:, lag:]
    a, b = a[ok], b[ok]  # (N, D)
    if a.shape[0] < 2:
        return float("nan")
    a, b = a - a.mean(0), b - b.mean(0)
    corr = (a * b).mean(0) / (a.std(0, unbiased=False) * b.std(0, unbiased=False)).clamp(min=1e-8)
    return float(corr.mean())


def learnability(
    y: Tensor,
    mask: Tensor,
    copies: int,
    lag: int,
    grid: tuple[int, int] | None = None,
    padding: Tensor | None = None,
) -> dict[str, float]:
    """y: (B, T, D) teacher targets per sample; mask: (B * copies, T) True = masked; padding:
    (B, T). -> {copy_r2, interp_r2, target_autocorr} at the masked positions."""
    rows = torch.arange(mask.shape[0], device=y.device) // copies
    yr = y[rows].float()  # (R, T, D)
    visible = ~mask
    if padding is not None:
        visible = visible & ~padding[rows]
    copy, interp, ok = trivial_predictions(yr, visible, grid)
    at = mask & ok
    if int(at.sum()) < 2:
        return {"copy_r2": float("nan"), "interp_r2": float("nan"), "target_autocorr": float("nan")}
    return {
        "copy_r2": float(explained_variance(copy[at], yr[at])),
        "interp_r2": float(explained_variance(interp[at], yr[at])),
        "target_autocorr": autocorrelation(y, lag, padding),
    }

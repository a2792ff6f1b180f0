"""BEiT's relative position bias: a learned per-head bias for every (query, key) pair of patches
by their 2-D offset, plus three entries for the CLS token (CLS to patch, patch to CLS, CLS to
CLS). The same indexing as HF's Data2VecVisionRelativePositionBias, so weights map one to one.

Dimensions: h x w patch grid, N = 1 + h w tokens (CLS first), H heads, R rows, K kept tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def relative_position_index(grid: tuple[int, int]) -> Tensor:
    """(N, N) index into the bias table: patch pairs by offset, then the three CLS entries."""
    h, w = grid
    n_rel = (2 * h - 1) * (2 * w - 1)
    coords = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (hw, hw, 2)
    rel[:, :, 0] += h - 1
    rel[:, :, 1] += w - 1
    rel[:, :, 0] *= 2 * w - 1
    index = torch.zeros((h * w + 1,) * 2, dtype=torch.long)
    index[1:, 1:] = rel.sum(-1)
    index[0, :] = n_rel  # CLS to token
    index[:, 0] = n_rel + 1  # token to CLS
    index[0, 0] = n_rel + 2
    return index


class RelativePositionBias(nn.Module):
    def __init__(self, grid: tuple[int, int], heads: int):
        super().__init__()
        n = (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3
        self.table = nn.Parameter(torch.zeros(n, heads))  # BEiT: zeros
        self.register_buffer("index", relative_position_index(grid), persistent=False)

    def forward(self, keep: Tensor | None = None) -> Tensor:
        """keep: (R, K) the tokens each row kept (CLS = 0), or None for all -> the additive
        attention bias (1, H, N, N) or (R, H, K, K)."""
        if keep is None:
            return self.table[self.index].permute(2, 0, 1)[None]
        index = self.index[keep[:, :, None], keep[:, None, :]]  # (R, K, K)
        return self.table[index].permute(0, 3, 1, 2)

"""Vision frontend: ViT patch embedding, 2-D positions, learned mask embedding.

Dimensions: B batch, C channels, H x W image, P patch size, T = (H/P)(W/P) patches, D width.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from d2v.encoder import Frontend, Tokens, gather_visible
from d2v.masking import MaskInfo


def sincos_2d(grid: tuple[int, int], dim: int) -> Tensor:
    """Fixed 2-D sine-cosine positions (MAE): (h*w, D), half the channels per axis."""
    h, w = grid
    if dim % 4:
        raise ValueError(f"sincos positions need a width divisible by 4, got {dim}")
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float32) / (dim // 4))

    def axis(pos: Tensor) -> Tensor:
        angles = pos.flatten()[:, None] * omega[None, :]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([axis(ys), axis(xs)], dim=1)


class ImageFrontend(Frontend):
    def __init__(self, image_size: int, channels: int, patch_size: int, dim: int, pos: str):
        super().__init__()
        self.grid = (image_size // patch_size, image_size // patch_size)
        self.dim = dim
        self.patch_embed = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)
        positions = sincos_2d(self.grid, dim)
        if pos == "learned":
            self.pos = nn.Parameter(positions * 0.02)
        else:
            self.register_buffer("pos", positions, persistent=False)
        self.mask_emb = nn.Parameter(torch.zeros(dim))
        nn.init.trunc_normal_(self.mask_emb, std=0.02)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))  # as a linear layer (MAE)

    def forward(
        self, images: Tensor, mask: MaskInfo | None = None, visible_only: bool = False
    ) -> Tokens:
        """images: (B, C, H, W) -> tokens (B, T, D), masked patches as the mask embedding; or,
        visible_only, the visible patches of each mask row (R, K, D)."""
        x = self.patch_embed(images).flatten(2).transpose(1, 2).contiguous()  # (B, T, D)
        if visible_only:
            return Tokens(gather_visible(x + self.pos.to(x.dtype), mask))
        if mask is not None:
            x = torch.where(mask.mask[..., None], self.mask_emb.to(x.dtype), x)
        return Tokens(x + self.pos.to(x.dtype))

"""Vision frontend of the paper's encoder (BEiT, HF's Data2VecVisionEmbeddings): ViT patch
embedding, the learned mask embedding at masked patches, a CLS token first, then absolute
positions (`pos`: sincos, learned; the CLS token's row is zero for sincos) or none (`relative`,
`shared_relative`: the backbone's relative position bias carries them).

Dimensions: B batch, C channels, H x W image, P patch size, T = (H/P)(W/P) patches, D width,
R mask rows, K visible patches per row.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from d2v.encoder import Frontend, Tokens
from d2v.masking import MaskInfo
from d2v.modalities.image import sincos_2d

RELATIVE = {"relative": "layer", "shared_relative": "shared"}  # pos -> the backbone's rel_pos


class BeitFrontend(Frontend):
    def __init__(self, image_size: int, channels: int, patch_size: int, dim: int, pos: str):
        super().__init__()
        self.grid = (image_size // patch_size, image_size // patch_size)
        self.dim = dim
        self.patch_embed = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(dim))
        self.mask_emb = nn.Parameter(torch.zeros(dim))
        positions = torch.cat([torch.zeros(1, dim), sincos_2d(self.grid, dim)])  # (1 + T, D)
        if pos == "learned":
            self.pos = nn.Parameter(positions * 0.02)
        else:  # relative positions: none added here
            self.register_buffer("pos", positions if pos == "sincos" else None, persistent=False)
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.mask_emb, std=0.02)
        w = self.patch_embed.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    def forward(
        self, images: Tensor, mask: MaskInfo | None = None, visible_only: bool = False
    ) -> Tokens:
        """images: (B, C, H, W) -> tokens (B, 1 + T, D), CLS first, masked patches as the mask
        embedding; or, visible_only, CLS and the visible patches of each mask row
        (R, 1 + K, D)."""
        x = self.patch_embed(images).flatten(2).transpose(1, 2)  # (B, T, D)
        if mask is not None and not visible_only:
            x = torch.where(mask.mask[..., None], self.mask_emb.to(x.dtype), x)
        x = torch.cat([self.cls.to(x.dtype).expand(x.shape[0], 1, -1), x], dim=1)
        if self.pos is not None:
            x = x + self.pos.to(x.dtype)
        if not visible_only:
            return Tokens(x, prefix=1)
        keep = torch.cat([torch.zeros_like(mask.ids_keep[:, :1]), mask.ids_keep + 1], dim=1)
        rows = (
            mask.sample_of_row
            if x.shape[0] != keep.shape[0]
            else torch.arange(len(keep), device=keep.device)
        )
        return Tokens(x[rows[:, None], keep], keep=keep, prefix=1)

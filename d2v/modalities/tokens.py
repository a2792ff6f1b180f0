"""Text frontend (RoBERTa-style): token embedding, learned positions, embedding layer norm.

The mask embedding is the learned embedding row of the `<mask>` token: the student sees the
corrupted ids that BERT masking chose (mask token / random token / original token, 80/10/10),
the teacher the original ids.

Dimensions: B batch, T tokens, D width, V vocabulary. Padding masks: True = padding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from d2v.encoder import Frontend, Tokens, gather_visible
from d2v.masking import MaskInfo


class TextFrontend(Frontend):
    def __init__(self, vocab_size: int, max_len: int, dim: int, pad_id: int, dropout: float = 0.0):
        super().__init__()
        self.dim = dim
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        self.pos = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()

    def forward(
        self, ids: Tensor, mask: MaskInfo | None = None, visible_only: bool = False
    ) -> Tokens:
        """ids: (B, T) token ids -> tokens (B, T, D), padding where ids == pad_id; or,
        visible_only, the visible tokens of each mask row (R, K, D): data2vec 2.0 removes the
        masked tokens instead of corrupting them."""
        padding = ids == self.pad_id
        if mask is not None and mask.corrupt is not None and not visible_only:
            ids = mask.corrupt
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.drop(self.norm(self.embed(ids) + self.pos(positions)[None]))
        if visible_only:
            return Tokens(gather_visible(x, mask), gather_visible(padding, mask))
        return Tokens(x, padding)

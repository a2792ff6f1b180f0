"""Text frontend (RoBERTa-style): token embedding, learned positions, embedding layer norm.

The mask embedding is the learned embedding row of the `<mask>` token: the student sees the
corrupted ids that BERT masking chose (mask token / random token / original token, 80/10/10),
the teacher the original ids.

Dimensions: B batch, T tokens, D width, V vocabulary. Padding masks: True = padding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from d2v.encoder import Frontend, Tokens
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

    def forward(self, ids: Tensor, mask: MaskInfo | None = None) -> Tokens:
        """ids: (B, T) token ids -> tokens (B, T, D), padding where ids == pad_id."""
        padding = ids == self.pad_id
        if mask is not None and mask.corrupt is not None:
            ids = mask.corrupt
        positions = torch.arange(ids.shape[1], device=ids.device)
        x = self.embed(ids) + self.pos(positions)[None]
        return Tokens(self.drop(self.norm(x)), padding)

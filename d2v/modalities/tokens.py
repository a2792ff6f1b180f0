"""Text frontend (RoBERTa-style): token embedding, learned positions, embedding layer norm.

With the paper's architecture (`model.arch: paper`) it is RoBERTa's exactly (HF's
Data2VecTextEmbeddings): positions count the non-padding tokens from `pad_id + 1` (padding
takes the zero row `pad_id`), and a token-type embedding (one type, as RoBERTa) is added.

The mask embedding is the learned embedding row of the `<mask>` token: the student sees the
corrupted ids that BERT masking chose (mask token / random token / original token, 80/10/10),
the teacher the original ids.

Dimensions: B batch, T tokens, D width, V vocabulary. Padding masks: True = padding.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from d2v.config import Arch
from d2v.encoder import Frontend, Tokens, gather_visible
from d2v.masking import MaskInfo


def roberta_positions(padding: Tensor, pad_id: int) -> Tensor:
    """padding: (B, T) True = padding -> (B, T) position ids: pad_id + 1, pad_id + 2, ... over
    the non-padding tokens, pad_id on padding (fairseq's `make_positions`)."""
    keep = (~padding).long()
    return torch.cumsum(keep, dim=1) * keep + pad_id


class TextFrontend(Frontend):
    def __init__(
        self,
        vocab_size: int,
        max_len: int,
        dim: int,
        pad_id: int,
        dropout: float = 0.0,
        arch: Arch = Arch.generic,
        eps: float = 1e-5,
        type_vocab: int = 1,
    ):
        super().__init__()
        self.dim = dim
        self.pad_id = pad_id
        self.arch = arch
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=pad_id)
        if arch == Arch.paper:  # RoBERTa: rows 0..pad_id unused but by padding (fairseq)
            self.pos = nn.Embedding(max_len + pad_id + 1, dim, padding_idx=pad_id)
            self.token_type = nn.Embedding(type_vocab, dim)
        else:
            self.pos = nn.Embedding(max_len, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.drop = nn.Dropout(dropout)
        nn.init.normal_(self.embed.weight, std=0.02)
        nn.init.normal_(self.pos.weight, std=0.02)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()
            if arch == Arch.paper:
                nn.init.normal_(self.token_type.weight, std=0.02)
                self.pos.weight[pad_id].zero_()

    def embed_positions(self, ids: Tensor, padding: Tensor) -> Tensor:
        """ids: (B, T) -> token + position (+ token type) embeddings (B, T, D)."""
        if self.arch == Arch.paper:
            pos = self.pos(roberta_positions(padding, self.pad_id))
            return self.embed(ids) + self.token_type.weight[0] + pos
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.embed(ids) + self.pos(positions)[None]

    def forward(
        self, ids: Tensor, mask: MaskInfo | None = None, visible_only: bool = False
    ) -> Tokens:
        """ids: (B, T) token ids -> tokens (B, T, D), padding where ids == pad_id; or,
        visible_only, the visible tokens of each mask row (R, K, D): data2vec 2.0 removes the
        masked tokens instead of corrupting them."""
        padding = ids == self.pad_id
        if mask is not None and mask.corrupt is not None and not visible_only:
            ids = mask.corrupt
        x = self.drop(self.norm(self.embed_positions(ids, padding)))
        if visible_only:
            return Tokens(gather_visible(x, mask), gather_visible(padding, mask))
        return Tokens(x, padding)

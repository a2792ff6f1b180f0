"""Downstream heads on a (pretrained or randomly initialized) encoder. Each model owns its loss
(`loss(source, labels)`) and its predictions (`predict(source)`), so one fine-tuning loop serves
classification (images, GLUE), regression (STS-B) and CTC speech recognition.

Dimensions: B batch, T tokens / frames, D width, C classes, V vocabulary, U label length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d2v.config import SpanMaskConfig
from d2v.encoder import Encoder
from d2v.kept import KeptPerTensor
from d2v.masking import span_mask


def mean_pool(last: Tensor, padding_mask: Tensor | None) -> Tensor:
    """last: (B, T, D), padding_mask: (B, T) True = padding -> (B, D) mean over real tokens."""
    if padding_mask is None:
        return last.mean(1)
    keep = (~padding_mask).unsqueeze(-1).to(last.dtype)
    return (last * keep).sum(1) / keep.sum(1).clamp(min=1)


class BatchStandardize(nn.BatchNorm1d):
    """Each pooled feature standardized over the batch, no affine (MAE's probe head): the
    features' shared component, which a layer norm of each vector keeps, is removed. A one-row
    training batch (an epoch's last) is standardized with the running statistics instead."""

    def __init__(self, dim: int):
        super().__init__(dim, affine=False)

    def forward(self, x: Tensor) -> Tensor:  # (B, D) -> (B, D)
        if self.training and x.shape[0] < 2:
            return F.batch_norm(x, self.running_mean, self.running_var, eps=self.eps)
        return super().forward(x)


def head_norm(kind: str, dim: int) -> nn.Module:
    """The norm between the pooled features and the linear head: `layer` (BEiT / data2vec image
    fine-tuning) or `batch` (BatchStandardize)."""
    return nn.LayerNorm(dim) if kind == "layer" else BatchStandardize(dim)


class Classifier(nn.Module):
    """Mean-pooled features -> norm (LayerNorm, or standardized over the batch) -> linear."""

    def __init__(self, encoder: Encoder, num_classes: int, norm: str = "layer"):
        super().__init__()
        self.encoder = encoder
        self.fc_norm = head_norm(norm, encoder.dim)
        self.head = nn.Linear(encoder.dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def forward_features(self, source: Tensor) -> Tensor:
        out = self.encoder(source)
        return mean_pool(out.last, out.padding_mask)  # (B, D)

    def forward_head(self, features: Tensor) -> Tensor:
        return self.head(self.fc_norm(features))  # (B, C)

    def forward(self, source: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(source))

    def loss(self, source: Tensor, labels: Tensor) -> Tensor:
        return F.cross_entropy(self(source).float(), labels)

    def predict(self, source: Tensor) -> Tensor:
        return self(source).float()  # (B, C) logits


class Regressor(Classifier):
    """One output, mean squared error (GLUE STS-B)."""

    def __init__(self, encoder: Encoder, norm: str = "layer"):
        super().__init__(encoder, 1, norm)

    def loss(self, source: Tensor, labels: Tensor) -> Tensor:
        return F.mse_loss(self(source).float().squeeze(-1), labels.float())

    def predict(self, source: Tensor) -> Tensor:
        return self(source).float().squeeze(-1)  # (B,)


class CTCModel(nn.Module):
    """wav2vec 2.0 fine-tuning: a linear layer over the frames to characters, CTC loss.

    The conv feature encoder stays frozen throughout (wav2vec 2.0: feature_grad_mult 0), and in
    training the frames are span-masked (`mask`, a milder SpecAugment-like masking than in
    pretraining). Index 0 of `vocab` is the CTC blank, "|" the word boundary.
    """

    def __init__(self, encoder: Encoder, vocab: list[str], mask: SpanMaskConfig | None = None):
        super().__init__()
        self.encoder = encoder
        self.vocab = vocab
        self.mask_cfg = mask
        self.head = nn.Linear(encoder.dim, len(vocab))
        features = getattr(encoder.frontend, "features", None)
        if features is not None:
            features.requires_grad_(False)

    def forward(self, source, mask=None) -> tuple[Tensor, Tensor]:
        """source: Audio -> log-probs (B, T, V) and valid frames (B,)."""
        out = self.encode(source, mask)
        logits = self.head(out.last).float()
        frames = (~out.padding_mask).sum(1)
        return logits.log_softmax(-1), frames

    def encode(self, source, mask=None):
        return self.encoder(source, mask)

    def _train_mask(self, source):
        if self.mask_cfg is None or not self.training or self.mask_cfg.prob <= 0:
            return None
        features = self.encoder.frontend.features
        T = int(features.frame_lengths(torch.tensor(source.wave.shape[1])))
        frames = features.frame_lengths(source.lengths.cpu())
        seed = int(torch.randint(0, 2**31 - 1, (1,)).item())  # from the run's seeded RNG
        info = span_mask(frames, T, self.mask_cfg, torch.Generator().manual_seed(seed))
        return info.to(source.wave.device)

    def loss(self, source, labels: Tensor) -> Tensor:
        """labels: (B, U) character ids, -1 = padding."""
        log_probs, frames = self(source, self._train_mask(source))
        lengths = (labels >= 0).sum(1)
        return F.ctc_loss(
            log_probs.transpose(0, 1),
            labels.clamp(min=0),
            frames,
            lengths,
            blank=0,
            reduction="mean",
            zero_infinity=True,
        )

    def predict(self, source) -> list[str]:
        log_probs, frames = self(source)
        return greedy_decode(log_probs.argmax(-1), frames, self.vocab)


class CTCProbe(CTCModel):
    """The speech probe: a linear CTC layer over a frozen encoder, never masked. The encoder stays
    in eval mode (no dropout under a probe), and its output for a batch is kept while the batch's
    waveform tensor lives: a training pass hands the same length buckets back every epoch
    (`speech._Pass`), so each is encoded once per run instead of once per update."""

    def __init__(self, encoder: Encoder, vocab: list[str]):
        super().__init__(encoder, vocab, None)
        self._kept = KeptPerTensor()

    def train(self, mode: bool = True) -> CTCProbe:
        super().train(mode)
        self.encoder.eval()
        return self

    def encode(self, source, mask=None):
        def frozen():
            with torch.no_grad():
                return source.lengths.clone(), self.encoder(source)

        lengths, out = self._kept.get(source.wave, frozen)
        if not torch.equal(lengths, source.lengths):  # the same waves cut to other lengths
            lengths, out = frozen()
        return out


def greedy_decode(best: Tensor, frames: Tensor, vocab: list[str]) -> list[str]:
    """Best path per frame (B, T) -> text: merge repeats, drop blanks (index 0), "|" -> space."""
    keep = torch.ones_like(best, dtype=torch.bool)
    keep[:, 1:] = best[:, 1:] != best[:, :-1]
    keep &= best != 0
    keep &= torch.arange(best.shape[1], device=best.device)[None] < frames[:, None]
    texts = []
    for row, k in zip(best.cpu(), keep.cpu(), strict=True):
        chars = "".join(vocab[i] for i in row[k].tolist())
        texts.append(" ".join(chars.replace("|", " ").split()))
    return texts


def labels_to_text(labels: Tensor, vocab: list[str]) -> list[str]:
    """(B, U) character ids, -1 = padding -> reference texts."""
    out = []
    for row in labels.cpu():
        chars = "".join(vocab[i] for i in row[row >= 0].tolist())
        out.append(" ".join(chars.replace("|", " ").split()))
    return out

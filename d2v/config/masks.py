"""Mask settings: data2vec's (v1) block, span and BERT masks, and data2vec 2.0's inverse block
masks and fixed-count token masks."""

from __future__ import annotations

from dataclasses import dataclass

from d2v.config.base import check


@dataclass
class BlockMaskConfig:
    """BEiT block-wise masking; the count is then made exact (data2vec 2.0)."""

    ratio: float = 0.6  # paper: 60% of patches
    min_patches: int = 4  # smallest block, in patches (BEiT: 16 on a 14x14 grid)
    min_aspect: float = 0.3  # aspect ratio range [min_aspect, 1/min_aspect] (BEiT)

    def validate(self, p: str) -> None:
        check(0 < self.ratio < 1, f"{p}.ratio", self.ratio, "(0, 1)")
        check(self.min_patches >= 1, f"{p}.min_patches", self.min_patches, ">= 1")
        check(0 < self.min_aspect <= 1, f"{p}.min_aspect", self.min_aspect, "(0, 1]")


@dataclass
class SpanMaskConfig:
    """wav2vec 2.0 span masking of speech frames (data2vec speech uses the same)."""

    prob: float = 0.65  # probability that a frame starts a span; ~49% of frames end up masked
    length: int = 10  # frames per span (200 ms at 50 Hz)
    min_spans: int = 2  # fairseq's min_masks: at least this many spans per sample

    def validate(self, p: str) -> None:
        check(0 < self.prob <= 1, f"{p}.prob", self.prob, "(0, 1]")
        check(self.length >= 1, f"{p}.length", self.length, ">= 1")
        check(self.min_spans >= 0, f"{p}.min_spans", self.min_spans, ">= 0")


@dataclass
class TokenMaskConfig:
    """BERT token masking (data2vec text); span > 1 masks runs of tokens instead."""

    prob: float = 0.15  # fraction of maskable tokens selected (BERT)
    mask_frac: float = 0.8  # of the selected: replaced by the mask token
    random_frac: float = 0.1  # of the selected: replaced by a random token; the rest are kept
    span: int = 1  # 1: BERT tokens; data2vec text's span option: span 4 with prob 0.35

    def validate(self, p: str) -> None:
        check(0 < self.prob < 1, f"{p}.prob", self.prob, "(0, 1)")
        check(0 <= self.mask_frac <= 1, f"{p}.mask_frac", self.mask_frac, "[0, 1]")
        check(0 <= self.random_frac <= 1, f"{p}.random_frac", self.random_frac, "[0, 1]")
        check(
            self.mask_frac + self.random_frac <= 1 + 1e-9,  # 0.9 + 0.1 in floating point
            f"{p}.random_frac",
            self.random_frac,
            f"[0, 1 - mask_frac={1 - self.mask_frac:g}]",
        )
        check(
            self.mask_frac + self.random_frac > 0,  # else the student sees the unmasked input
            f"{p}.mask_frac",
            self.mask_frac,
            "> 0 when random_frac = 0 (a mask must change the student's input)",
        )
        check(self.span >= 1, f"{p}.span", self.span, ">= 1")


@dataclass
class InverseBlockMaskConfig:
    """data2vec 2.0 image masking: square blocks of *kept* patches are grown around random
    centres, the kept count is made exact, and everything else is masked."""

    ratio: float = 0.8  # masked share of the patches (data2vec 2.0: 0.8)
    block: int = 3  # side of a kept block, in patches (data2vec 2.0: 3 on a 14x14 grid)
    adjust: float = 0.07  # extra kept share the centres are drawn for (fairseq mask_prob_adjust)

    def validate(self, p: str) -> None:
        check(0 < self.ratio < 1, f"{p}.ratio", self.ratio, "(0, 1)")
        check(self.block >= 1, f"{p}.block", self.block, ">= 1")
        check(0 <= self.adjust < 1, f"{p}.adjust", self.adjust, "[0, 1)")


@dataclass
class FixedTokenMaskConfig:
    """data2vec 2.0 text masking: the same number of tokens in every sample, chosen uniformly
    among the maskable ones and removed from the student's input (no mask token)."""

    prob: float = 0.48  # masked share of the maskable tokens (data2vec 2.0 text: 0.48)

    def validate(self, p: str) -> None:
        check(0 < self.prob < 1, f"{p}.prob", self.prob, "(0, 1)")

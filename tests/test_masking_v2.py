"""data2vec 2.0 masks: inverse block masks hit the ratio exactly and are seed-deterministic; speech
and text masks give every row the same count and never touch padding or special tokens; copies
of a sample are masked differently; a rank's slice of a multi-mask batch holds its samples'
copies."""

from __future__ import annotations

import pytest
import torch

from d2v.config import InverseBlockMaskConfig, SpanMaskConfig
from d2v.masking import (
    fixed_count_mask,
    fixed_span_mask,
    fixed_token_mask,
    inverse_block_mask,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("ratio", [0.5, 0.8, 0.9])
@pytest.mark.parametrize(("grid", "block"), [((7, 7), 2), ((14, 14), 3), ((4, 6), 1)])
def test_inverse_block_mask_hits_the_ratio_exactly(ratio, grid, block) -> None:
    cfg = InverseBlockMaskConfig(ratio=ratio, block=block)
    T = grid[0] * grid[1]
    m = inverse_block_mask(128, grid, cfg, gen(0))
    assert m.mask.shape == (128, T)
    assert (m.mask.sum(1) == T - round((1 - ratio) * T)).all()
    assert m.ids_keep.shape == (128, round((1 - ratio) * T))
    assert not m.mask.gather(1, m.ids_keep).any()  # ids_keep are exactly the visible patches


def test_inverse_block_mask_is_seed_deterministic() -> None:
    cfg = InverseBlockMaskConfig()
    a, b = (
        inverse_block_mask(16, (14, 14), cfg, gen(3)),
        inverse_block_mask(16, (14, 14), cfg, gen(3)),
    )
    c = inverse_block_mask(16, (14, 14), cfg, gen(4))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.ids_restore, b.ids_restore)
    assert not torch.equal(a.mask, c.mask)


def test_inverse_block_mask_keeps_blocks() -> None:
    """Kept patches sit next to kept patches far more often than under uniform masking."""

    def kept_neighbours(mask: torch.Tensor) -> float:
        k = (~mask).view(-1, 14, 14).float()
        same = (k[:, :, 1:] * k[:, :, :-1]).sum() + (k[:, 1:, :] * k[:, :-1, :]).sum()
        return float(same / k.sum())

    blocks = inverse_block_mask(64, (14, 14), InverseBlockMaskConfig(ratio=0.8, block=3), gen(0))
    uniform = fixed_count_mask(torch.ones(64, 196, dtype=torch.bool), gen(0), count=157)
    assert kept_neighbours(blocks.mask) > 3 * kept_neighbours(uniform.mask)


def test_copies_of_a_sample_get_different_masks() -> None:
    m = inverse_block_mask(4 * 8, (7, 7), InverseBlockMaskConfig(block=2), gen(0))
    rows = m.mask.view(4, 8, 49)
    for b in range(4):
        assert len({tuple(r.tolist()) for r in rows[b]}) == 8


def test_fixed_span_mask_same_count_never_padding() -> None:
    lengths = torch.tensor([200, 150, 90, 200, 37])
    m = fixed_span_mask(lengths.repeat_interleave(3), 200, SpanMaskConfig(0.5, 5, 1), gen(0), 3)
    counts = m.mask.sum(1)
    assert (counts == counts[0]).all() and counts[0] > 0
    pad = torch.arange(200)[None] >= lengths.repeat_interleave(3)[:, None]
    assert not (m.mask & pad).any()
    assert m.ids_keep.shape == (15, 200 - int(counts[0]))
    assert not m.mask.gather(1, m.ids_keep).any()
    assert m.copies == 3


def test_fixed_token_mask_same_count_never_special() -> None:
    special = torch.zeros(6, 64, dtype=torch.bool)
    special[:, 0] = True  # <s>
    special[2, 50:] = True  # padding
    m = fixed_token_mask(special, 0.48, gen(0), copies=2)
    n = 64 - 1 - 14  # the fewest maskable tokens of any row
    assert (m.mask.sum(1) == round(0.48 * n)).all()
    assert not (m.mask & special).any()


def test_select_takes_a_ranks_samples_with_all_their_copies() -> None:
    m = inverse_block_mask(6 * 4, (7, 7), InverseBlockMaskConfig(block=2), gen(0))
    m.copies = 4
    part = m.select(slice(2, 4))  # samples 2 and 3 of 6
    assert part.copies == 4
    assert torch.equal(part.mask, m.mask[8:16]) and torch.equal(part.ids_keep, m.ids_keep[8:16])
    assert part.sample_of_row.tolist() == [0, 0, 0, 0, 1, 1, 1, 1]

"""Masks: exact requested ratio, seed-determinism, MaskInfo index consistency, block shape."""

from __future__ import annotations

import pytest
import torch

from d2v.config import BlockMaskConfig
from d2v.masking import MaskInfo, block_mask, mask_from_scores


def random_mask(batch: int, tokens: int, ratio: float, generator: torch.Generator) -> MaskInfo:
    """Uniformly random tokens, exactly round(ratio * T) masked per sample (MAE's masking)."""
    return mask_from_scores(torch.rand(batch, tokens, generator=generator), round(ratio * tokens))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("ratio", [0.1, 0.4, 0.6, 0.9])
@pytest.mark.parametrize("grid", [(7, 7), (14, 14), (4, 6)])
def test_block_mask_has_exact_ratio(ratio: float, grid: tuple[int, int]) -> None:
    m = block_mask(64, grid, BlockMaskConfig(ratio=ratio, min_patches=4), gen(0))
    T = grid[0] * grid[1]
    assert m.mask.shape == (64, T)
    assert (m.mask.sum(1) == round(ratio * T)).all()


def test_same_seed_same_mask_and_other_seed_differs() -> None:
    cfg = BlockMaskConfig()
    a, b = block_mask(16, (7, 7), cfg, gen(3)), block_mask(16, (7, 7), cfg, gen(3))
    c = block_mask(16, (7, 7), cfg, gen(4))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.ids_keep, b.ids_keep)
    assert not torch.equal(a.mask, c.mask)


def test_block_masks_are_blocky() -> None:
    """Block masking leaves masked patches next to masked patches far more than random masking."""

    def neighbours(mask: torch.Tensor) -> float:
        m = mask.view(-1, 14, 14).float()
        same = (m[:, :, 1:] * m[:, :, :-1]).sum() + (m[:, 1:, :] * m[:, :-1, :]).sum()
        return float(same / m.sum())

    blocks = block_mask(64, (14, 14), BlockMaskConfig(ratio=0.4, min_patches=16), gen(0))
    rand = random_mask(64, 196, 0.4, gen(0))
    assert neighbours(blocks.mask) > 1.3 * neighbours(rand.mask)


def test_mask_info_indices_agree() -> None:
    m = random_mask(8, 20, 0.35, gen(1))
    keep = m.ids_keep.shape[1]
    assert keep == 20 - 7 and m.num_masked == 7
    # visible tokens are exactly the unmasked ones
    assert not m.mask.gather(1, m.ids_keep).any()
    # ids_restore undoes the [visible, masked] ordering (MAE's unshuffle)
    x = torch.arange(20).expand(8, 20)
    shuffled = torch.cat([x.gather(1, m.ids_keep), x[m.mask].view(8, -1)], dim=1)
    order = torch.argsort(torch.cat([m.ids_keep, torch.nonzero(m.mask)[:, 1].view(8, -1)], 1), 1)
    assert torch.equal(shuffled.gather(1, order), x)
    assert torch.equal(m.mask, m.ids_restore >= keep)


def test_mask_from_scores_masks_highest() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.7]])
    m = mask_from_scores(scores, 2)
    assert m.mask.tolist() == [[False, True, False, True]]

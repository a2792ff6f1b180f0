"""Sequence masks: speech spans (wav2vec 2.0) and text tokens (BERT 80/10/10, span option)."""

from __future__ import annotations

import math

import pytest
import torch

from d2v.config import ConfigError, SpanMaskConfig, TokenMaskConfig
from d2v.masking import span_mask, token_mask

VOCAB, NUM_SPECIAL, MASK_ID = 1000, 4, 3  # ids 0..3: <s>, <pad>, </s>, <mask>


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def runs(row: torch.Tensor) -> list[int]:
    """Lengths of the runs of True in a 1-D bool tensor."""
    padded = torch.cat(
        [torch.zeros(1, dtype=torch.long), row.long(), torch.zeros(1, dtype=torch.long)]
    )
    edges = torch.diff(padded)
    starts, ends = torch.nonzero(edges == 1)[:, 0], torch.nonzero(edges == -1)[:, 0]
    return (ends - starts).tolist()


def expected_span_fraction(L: int, cfg: SpanMaskConfig) -> float:
    """Exact expected masked fraction of a full-length sample: n = L - length + 1 possible starts,
    k distinct ones (k = floor(prob L / length + u), so k0 or k0 + 1 with weights 1 - frac, frac),
    frame t is covered by m_t starts and stays visible with probability C(n - m_t, k) / C(n, k)."""
    n = L - cfg.length + 1
    x = cfg.prob * L / cfg.length
    k0, frac = math.floor(x), x - math.floor(x)
    visible = 0.0
    for k, w in ((k0, 1 - frac), (k0 + 1, frac)):
        for t in range(L):
            m = min(t, n - 1) - max(0, t - cfg.length + 1) + 1
            visible += w * math.comb(n - m, k) / math.comb(n, k)
    return 1 - visible / L


def test_span_mask_fraction_matches_wav2vec() -> None:
    cfg = SpanMaskConfig()  # 0.65 / 10: the paper's ~49%
    L = 500
    m = span_mask(torch.full((512,), L), L, cfg, gen(0))
    expected = expected_span_fraction(L, cfg)
    assert 0.47 < expected < 0.50
    assert m.mask.float().mean().item() == pytest.approx(expected, abs=0.006)
    assert m.ids_keep is None and m.ids_restore is None and m.corrupt is None


def test_span_mask_seeded() -> None:
    lengths = torch.tensor([300, 200, 120, 64])
    a = span_mask(lengths, 300, SpanMaskConfig(), gen(1))
    b = span_mask(lengths, 300, SpanMaskConfig(), gen(1))
    c = span_mask(lengths, 300, SpanMaskConfig(), gen(2))
    assert torch.equal(a.mask, b.mask)
    assert not torch.equal(a.mask, c.mask)


def test_span_mask_respects_lengths_and_span_runs() -> None:
    cfg = SpanMaskConfig()
    T = 200
    lengths = torch.randint(1, T + 1, (256,), generator=gen(5))
    lengths[:4] = torch.tensor([T, 5, cfg.length, cfg.length + 3])
    m = span_mask(lengths, T, cfg, gen(3)).mask
    padding = torch.arange(T)[None, :] >= lengths[:, None]
    assert not (m & padding).any()
    assert not m[1].any()  # shorter than one span: nothing masked
    assert m[2].sum() == cfg.length  # one possible start: one span fills it
    for row, n in zip(m, lengths.tolist(), strict=True):
        if n >= cfg.length:  # room for a span: min_spans guarantees one
            assert row.any()
        assert all(r >= cfg.length for r in runs(row))  # starts fit: spans are never clipped


def test_span_mask_min_spans() -> None:
    """A sample whose expected count rounds to 0 still gets min_spans spans: two distinct
    starts of 3-frame spans mask 4 to 6 frames, one span would mask 3."""
    cfg = SpanMaskConfig(prob=0.01, length=3, min_spans=2)
    m = span_mask(torch.full((64,), 40), 40, cfg, gen(0)).mask
    assert (m.sum(1) >= 4).all() and (m.sum(1) <= 6).all()


def make_text(batch: int, T: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """<s> w1 .. wn </s> <pad>...: random lengths, ids of words in [NUM_SPECIAL, VOCAB)."""
    g = gen(seed)
    n = torch.randint(T // 4, T - 1, (batch,), generator=g)
    tokens = torch.randint(NUM_SPECIAL, VOCAB, (batch, T), generator=g)
    pos = torch.arange(T)[None, :]
    tokens[:, 0] = 0
    tokens = torch.where(pos == n[:, None] + 1, 2, tokens)
    tokens = torch.where(pos > n[:, None] + 1, 1, tokens)
    special = tokens < NUM_SPECIAL
    return tokens, special


def test_token_mask_bert_fractions() -> None:
    tokens, special = make_text(512, 64, seed=0)
    cfg = TokenMaskConfig()
    m = token_mask(tokens, special, cfg, MASK_ID, VOCAB, NUM_SPECIAL, gen(0))
    sel = m.mask
    n = (~special).sum(1)
    assert not (sel & special).any()
    # probabilistic rounding: int(0.15 n + u) per sample, at least 1
    k = sel.sum(1)
    assert ((k == torch.floor(0.15 * n)) | (k == torch.floor(0.15 * n) + 1)).all()
    assert (k >= 1).all()
    assert k.sum().item() / n.sum().item() == pytest.approx(0.15, abs=0.005)

    total = sel.sum().item()
    masked = (m.corrupt == MASK_ID) & sel
    changed = (m.corrupt != tokens) & sel & ~masked  # random, except draws of the same id
    kept = (m.corrupt == tokens) & sel
    assert masked.sum().item() / total == pytest.approx(0.8, abs=0.02)
    assert changed.sum().item() / total == pytest.approx(0.1, abs=0.015)
    assert kept.sum().item() / total == pytest.approx(0.1, abs=0.015)
    assert (m.corrupt[sel & ~masked] >= NUM_SPECIAL).all()  # random ids are never special
    assert torch.equal(m.corrupt[~sel], tokens[~sel])  # unselected positions untouched


def test_token_mask_random_ids_never_special() -> None:
    """All-random replacement over a tiny vocabulary: only non-special ids, all of them drawn."""
    tokens, special = make_text(64, 32, seed=3)
    cfg = TokenMaskConfig(prob=0.5, mask_frac=0.0, random_frac=1.0)
    m = token_mask(tokens, special, cfg, MASK_ID, 8, NUM_SPECIAL, gen(0))
    drawn = m.corrupt[m.mask]
    assert drawn.numel() > 200
    assert set(drawn.tolist()) == {4, 5, 6, 7}


def test_token_mask_seeded() -> None:
    tokens, special = make_text(32, 40, seed=1)
    cfg = TokenMaskConfig()
    a = token_mask(tokens, special, cfg, MASK_ID, VOCAB, NUM_SPECIAL, gen(7))
    b = token_mask(tokens, special, cfg, MASK_ID, VOCAB, NUM_SPECIAL, gen(7))
    c = token_mask(tokens, special, cfg, MASK_ID, VOCAB, NUM_SPECIAL, gen(8))
    assert torch.equal(a.mask, b.mask) and torch.equal(a.corrupt, b.corrupt)
    assert not torch.equal(a.mask, c.mask)


def test_token_mask_span_option() -> None:
    tokens, special = make_text(512, 128, seed=2)
    cfg = TokenMaskConfig(prob=0.35, span=4)
    sel = token_mask(tokens, special, cfg, MASK_ID, VOCAB, NUM_SPECIAL, gen(0)).mask
    n = (~special).sum(1)
    assert not (sel & special).any()
    assert sel.sum().item() / n.sum().item() == pytest.approx(0.35, abs=0.01)
    # non-overlapping spans of 4 over contiguous words: every run is a multiple of 4
    assert all(r % 4 == 0 for row in sel for r in runs(row))


def test_token_mask_edge_cases() -> None:
    """A sample with no maskable token gets nothing; fewer than `span` gets all of them; a
    special token inside the text is skipped by the spans."""
    tokens = torch.tensor([[0, 2, 1, 1, 1, 1], [0, 7, 8, 2, 1, 1], [0, 7, 8, 2, 9, 2]])
    special = tokens < NUM_SPECIAL
    cfg = TokenMaskConfig(prob=0.5, span=4)
    for seed in range(20):
        sel = token_mask(tokens, special, cfg, MASK_ID, VOCAB, NUM_SPECIAL, gen(seed)).mask
        assert not sel[0].any()
        assert sel[1].tolist() == [False, True, True, False, False, False]
        assert sel[2].tolist() == [False, True, True, False, True, False]


def test_mask_configs_validate() -> None:
    SpanMaskConfig().validate("m")
    TokenMaskConfig().validate("m")
    TokenMaskConfig(mask_frac=0.9, random_frac=0.1).validate("m")
    with pytest.raises(ConfigError, match="m.prob"):
        SpanMaskConfig(prob=0).validate("m")
    with pytest.raises(ConfigError, match="m.length"):
        SpanMaskConfig(length=0).validate("m")
    with pytest.raises(ConfigError, match="m.random_frac"):
        TokenMaskConfig(mask_frac=0.8, random_frac=0.3).validate("m")
    with pytest.raises(ConfigError, match="m.span"):
        TokenMaskConfig(span=0).validate("m")

"""Text modality: the student sees BERT-corrupted ids, the teacher the original ones; masks
never touch special tokens; pretraining loss falls on the real corpus; GLUE heads and metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from d2v.config import Modality
from d2v.data.errors import DataError
from d2v.distributed import init_distributed
from d2v.downstream import build_model
from d2v.finetune import finetune, predict, probe_scores
from d2v.masking import MaskInfo
from d2v.modalities import downstream_task, pretrain_spec
from d2v.modalities.tokens import TextFrontend
from d2v.runs.evaluate import held_out_scores
from d2v.train import pretrain
from tests.helpers import tiny_params

TEXT_TINY = (
    "pretrain.text.v1.optim.steps=60",
    "pretrain.text.v1.optim.warmup_steps=6",
    "pretrain.text.v1.optim.batch_size=32",
    "pretrain.text.log_every=5",
    "pretrain.text.checkpoint_every=1000",
    "pretrain.text.collapse.check_after=1000",
    "data.text.block_size=64",
    "data.text.max_seq_len=64",
)


def test_student_sees_corrupted_ids_teacher_the_original() -> None:
    torch.manual_seed(0)
    frontend = TextFrontend(vocab_size=50, max_len=8, dim=16, pad_id=1).eval()
    ids = torch.tensor([[0, 7, 8, 9, 2, 1]])
    corrupt = torch.tensor([[0, 4, 8, 30, 2, 1]])  # <mask> at 1, a random token at 3
    mask = MaskInfo(mask=torch.tensor([[False, True, False, True, False, False]]), corrupt=corrupt)
    seen = frontend(ids, mask)
    assert torch.allclose(seen.x, frontend(corrupt).x)
    assert not torch.allclose(seen.x, frontend(ids).x)
    assert seen.padding_mask.tolist() == [[False] * 5 + [True]]


def test_pretraining_masks_spare_special_tokens(prepared_text: Path) -> None:
    params = tiny_params(*TEXT_TINY)
    spec = pretrain_spec(params, Modality.text, prepared_text)
    idx = np.arange(64)
    tokens = spec.data.batch(idx)
    mask = spec.data.mask(idx, torch.Generator().manual_seed(0))
    assert not mask.mask[tokens < 5].any()  # <s> <pad> </s> <unk> <mask> never selected
    selected = mask.mask.sum() / (tokens >= 5).sum()
    assert 0.12 < selected < 0.18
    assert torch.equal(mask.corrupt[~mask.mask], tokens[~mask.mask])
    again = spec.data.mask(idx, torch.Generator().manual_seed(0))
    assert torch.equal(mask.mask, again.mask) and torch.equal(mask.corrupt, again.corrupt)


def test_data2vec_text_loss_falls_on_the_real_corpus(prepared_text: Path, tmp_path: Path) -> None:
    params = tiny_params(*TEXT_TINY, "pretrain.text.v1.optim.lr=0.002")
    spec = pretrain_spec(params, Modality.text, prepared_text)
    _, _, result = pretrain(spec, params.deepspeed, init_distributed(), 0, tmp_path / "ckpt")
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2]), losses
    assert result.final_target_std > 0.05  # not collapsed


def test_a_task_prepare_never_saw_is_refused_naming_it(prepared_text: Path) -> None:
    qqp = (
        "+finetune.qqp={modality: text, label_fraction: 1.0, layer_decay: 1.0, eval_batch_size: 8,"
        " optim: {steps: 10, batch_size: 8, lr: 0.001, weight_decay: 0.0, warmup_steps: 1},"
        " probe: {label_fraction: 1.0, epochs: 1, lr: 0.1, weight_decay: 0.0}}"
    )
    params = tiny_params(*TEXT_TINY, qqp)
    with pytest.raises(DataError, match=r"meta.json: no prepared task 'qqp' \(prepared: cola, "):
        downstream_task(params, "qqp", prepared_text)


def test_glue_tasks_score_with_their_official_metrics(prepared_text: Path) -> None:
    params = tiny_params(*TEXT_TINY)
    device = torch.device("cpu")
    expected = {
        "sst2": {"accuracy", "glue"},
        "stsb": {"pearson", "spearman", "glue"},
        "mrpc": {"accuracy", "f1", "glue"},
        "cola": {"mcc", "glue"},
    }
    for name, keys in expected.items():
        cfg = params.finetune[name]
        task = downstream_task(params, name, prepared_text)
        assert task.head == ("regress" if name == "stsb" else "classify")
        torch.manual_seed(0)
        model = build_model(task, task.build_encoder(), cfg)
        subset = np.arange(min(256, len(task.train_labels)))
        optim = cfg.optim.__class__(
            steps=8, batch_size=32, lr=1e-3, weight_decay=0.05, warmup_steps=1
        )
        finetune(model, lambda t=task, s=subset: t.train_pass(s, 32, 0), optim, device)
        scores = held_out_scores(task, model, 256, device)
        assert set(scores) == keys, name
        pred, labels = predict(model, task.eval_pass(256), device)
        assert len(pred) == len(labels) > 0
        probe = probe_scores(task.build_encoder(), task, cfg, 0.2, 0, device)
        assert set(probe) == keys
        for k in keys - {"glue"}:
            lo = -100 if k in ("mcc", "pearson", "spearman") else 0
            assert lo <= scores[k] <= 100, (name, k, scores[k])


def test_task_adaptive_text_holds_training_sentences_and_no_dev_sentence(
    prepared_text: Path, tmp_path: Path
) -> None:
    from d2v.data.glue import get_task, read_glue_tsv
    from d2v.data.text_prepare import prepare_text, task_sentences

    raw = prepared_text.parent / "raw"
    tasks = [get_task(t) for t in ("sst2", "stsb", "mrpc", "cola")]
    added = set(task_sentences(raw, tasks, "skip"))
    train, dev = set(), set()
    for task in tasks:
        for split, into in (("train", train), ("dev", dev)):
            examples, _ = read_glue_tsv(raw / "glue" / task.name / f"{split}.tsv", task)
            into.update(t for e in examples for t in (e.text_a, e.text_b) if t)
    assert added == train
    assert not added & (dev - train)  # a dev sentence only where it is also a training one
    meta = prepare_text(
        raw,
        tmp_path / "prepared",
        vocab_size=500,
        block_size=32,
        max_seq_len=32,
        tasks=["sst2"],
        limit_docs=500,
        task_adaptive=2,
    )
    sst2 = {e.text_a for e in read_glue_tsv(raw / "glue/sst2/train.tsv", "sst2")[0]}
    assert meta.corpus["task_adaptive"] == {"sentences": len(sst2), "repeats": 2}
    assert meta.corpus["documents"] == 500 + 2 * len(sst2)

"""Text: how the generic pretraining loop and the GLUE heads get their encoder, data and masks
from params and the prepared (BPE-encoded) text shards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from d2v.architecture import layout
from d2v.config import Method, Modality, ModelConfig, Params, TextPretrainConfig
from d2v.data.errors import DataError
from d2v.data.meta import TextMeta, read_meta
from d2v.data.text_shards import load_blocks, load_glue_split
from d2v.decoder import ConvDecoder
from d2v.downstream import DownstreamTask
from d2v.encoder import Encoder
from d2v.masking import MaskInfo, fixed_token_mask, token_mask
from d2v.metrics import GLUE_METRICS, glue_task_score
from d2v.metrics import accuracy as accuracy_pct
from d2v.metrics import f1 as f1_pct
from d2v.metrics import mcc as mcc_pct
from d2v.metrics import pearson as pearson_pct
from d2v.metrics import spearman as spearman_pct
from d2v.modalities.tokens import TextFrontend
from d2v.sampling import batch_indices
from d2v.train import PretrainSpec

# the official metric each task's metrics/eval/<task>.json leads with
PRIMARY_METRIC = {
    "cola": "mcc",
    "sst2": "accuracy",
    "mrpc": "f1",
    "qqp": "f1",
    "stsb": "pearson",
    "mnli": "accuracy",
    "qnli": "accuracy",
    "rte": "accuracy",
    "wnli": "accuracy",
}
_METRIC_FNS = {
    "accuracy": accuracy_pct,
    "f1": f1_pct,
    "mcc": mcc_pct,
    "pearson": pearson_pct,
    "spearman": spearman_pct,
}


def special_ids(meta: TextMeta) -> dict[str, int]:
    return {k: int(v) for k, v in meta.special_ids.items()}


def max_positions(params: Params) -> int:
    return max(params.data.text.block_size, params.data.text.max_seq_len)


def build_encoder(
    model: ModelConfig, vocab_size: int, max_len: int, pad_id: int, type_vocab: int = 1
) -> Encoder:
    """The generic encoder, or RoBERTa (HF's Data2VecTextModel) with `model.arch: paper`."""
    frontend = TextFrontend(
        vocab_size,
        max_len,
        model.dim,
        pad_id,
        model.dropout,
        model.arch,
        model.norm_eps,
        type_vocab,
    )
    return Encoder(frontend, model, layout(model, Modality.text))


class TextBlocks:
    """Pretraining view: fixed-length token blocks and their masks, special tokens never (data2vec:
    BERT masks; data2vec 2.0: `clone_batch` fixed-count masks per block)."""

    def __init__(self, blocks: np.ndarray, cfg: TextPretrainConfig, meta: TextMeta):
        self.blocks = blocks
        self.cfg = cfg
        self.ids = special_ids(meta)
        self.vocab_size = meta.vocab_size
        self.num_special = len(self.ids)

    def __len__(self) -> int:
        return len(self.blocks)

    def indices(self, batch_size: int, step: int, seed: int) -> np.ndarray:
        return batch_indices(len(self), batch_size, step, seed)

    def batch(self, indices: np.ndarray, rows: slice = slice(None)) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.blocks[indices[rows]])).long()  # (B, T)

    def mask(self, indices: np.ndarray, generator: torch.Generator) -> MaskInfo:
        tokens = self.batch(indices)
        special = tokens < self.num_special  # <s> <pad> </s> <unk> <mask> are ids 0..4
        if self.cfg.method == Method.v2:
            m = self.cfg.v2.clone_batch
            rows = special.repeat_interleave(m, dim=0)
            return fixed_token_mask(rows, self.cfg.v2.mask.prob, generator, copies=m)
        return token_mask(
            tokens,
            special,
            self.cfg.v1.mask,
            self.ids["mask"],
            self.vocab_size,
            self.num_special,
            generator,
        )


def pretrain_spec(params: Params, prepared_dir: Path) -> PretrainSpec:
    cfg = params.pretrain.text
    meta = read_meta(prepared_dir, TextMeta)
    data = TextBlocks(load_blocks(prepared_dir, "train"), cfg, meta)
    pad = special_ids(meta)["pad"]
    vocab, max_len = meta.vocab_size, max_positions(params)
    return PretrainSpec.from_config(
        cfg,
        Modality.text,
        params.model.depth,
        lambda: build_encoder(params.model, vocab, max_len, pad),
        data,
        build_decoder=lambda: ConvDecoder(cfg.v2.decoder, params.model.dim),
        span=cfg.v1.mask.span if cfg.method == Method.v1 else 1,
    )


class _Pass:
    """A re-iterable pass of (ids (B, L), labels (B,)) batches, each trimmed to its longest row.
    With a seed, each pass draws a new order, so epochs differ but the whole sequence of epochs
    is fixed by the seed; seed None keeps the order (evaluation)."""

    def __init__(
        self,
        ids: np.ndarray,
        labels: np.ndarray,
        idx: np.ndarray,
        bs: int,
        pad: int,
        seed: int | None,
    ):
        self.ids, self.labels, self.idx, self.bs, self.pad = ids, labels, idx, bs, pad
        self.rng = None if seed is None else np.random.default_rng(seed)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        idx = np.asarray(self.idx)
        if self.rng is not None:
            idx = self.rng.permutation(idx)
        for i in range(0, len(idx), self.bs):
            rows = np.sort(idx[i : i + self.bs])
            ids = self.ids[rows]
            width = max(1, int((ids != self.pad).sum(1).max()))
            yield (
                torch.from_numpy(np.ascontiguousarray(ids[:, :width])).long(),
                torch.from_numpy(np.asarray(self.labels[rows])),
            )


def task_scores(task: str, kind: str, pred: Tensor, labels: Tensor) -> dict[str, float]:
    """The task's official metrics (percent) and the single GLUE number the paper averages."""
    if kind == "classification":
        pred = pred.argmax(-1)
    if task == "mnli":  # one dev split at a time; the glue stage averages matched/mismatched
        acc = accuracy_pct(pred, labels)
        return {"accuracy": acc, "glue": acc}
    scores = {m: _METRIC_FNS[m](pred, labels) for m in GLUE_METRICS[task]}
    scores["glue"] = glue_task_score(task, scores)
    return scores


def downstream_task(params: Params, task: str, prepared_dir: Path) -> DownstreamTask:
    """A GLUE task (or its embedded stand-in): classification or regression on the mean-pooled
    encoder output, scored with the task's official metrics on its dev set."""
    meta = read_meta(prepared_dir, TextMeta)
    if task not in meta.tasks:  # a finetune entry prepare@text never saw
        raise DataError(
            f"{Path(prepared_dir) / 'meta.json'}: no prepared task {task!r} (prepared: "
            f"{', '.join(sorted(meta.tasks))}); add it to data.text.tasks and rerun prepare@text"
        )
    info = meta.tasks[task]
    pad = special_ids(meta)["pad"]
    vocab, max_len = meta.vocab_size, max_positions(params)
    train = load_glue_split(prepared_dir, task, "train")
    evals = {s: load_glue_split(prepared_dir, task, s) for s in info["eval_splits"]}
    primary, *others = info["eval_splits"]
    regression = info["kind"] == "regression"
    # strata for label subsets: classes, or regression targets binned by quartile
    strata = (
        np.digitize(train.labels, np.quantile(train.labels, [0.25, 0.5, 0.75]))
        if regression
        else train.labels
    )

    def eval_pass(split):
        return lambda bs: _Pass(
            split.input_ids, split.labels, np.arange(len(split.labels)), bs, pad, None
        )

    return DownstreamTask(
        name=task,
        modality=Modality.text,
        dataset=f"{task}-standin" if params.data.text.source == "embedded" else f"glue-{task}",
        metric=PRIMARY_METRIC[task],
        num_classes=1 if regression else int(info["num_classes"]),
        train_labels=strata,
        build_encoder=lambda: build_encoder(params.model, vocab, max_len, pad),
        train_pass=lambda idx, bs, seed: _Pass(train.input_ids, train.labels, idx, bs, pad, seed),
        eval_pass=eval_pass(evals[primary]),
        score=lambda pred, labels: task_scores(task, info["kind"], pred, labels),
        head="regress" if regression else "classify",
        extra_evals={name: eval_pass(evals[name]) for name in others},
        notes={"synthetic": bool(info.get("synthetic", False)), "eval_split": primary},
    )

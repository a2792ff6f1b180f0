"""Fine-tuning, linear probes and evaluation of a downstream task."""

from __future__ import annotations

from dataclasses import dataclass

from d2v.config.base import Modality, check, check_budget

# the two arms of every downstream comparison: same budget, pretrained or random encoder
INITS = ("pretrained", "scratch")
# the norm between pooled features and a classification / regression head (d2v/heads.py)
HEAD_NORMS = ("layer", "batch")


@dataclass(kw_only=True)
class FinetuneOptim:
    steps: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_steps: int

    def validate(self, p: str) -> None:
        check_budget(self, p)


@dataclass(kw_only=True)
class ProbeConfig:
    """Linear probe on frozen mean-pooled features: cheap, used by sweeps."""

    label_fraction: float
    epochs: int  # full-batch passes of the logistic regression
    lr: float
    weight_decay: float

    def validate(self, p: str) -> None:
        check(0 < self.label_fraction <= 1, f"{p}.label_fraction", self.label_fraction, "(0, 1]")
        check(self.epochs >= 1, f"{p}.epochs", self.epochs, ">= 1")
        check(self.lr > 0, f"{p}.lr", self.lr, "> 0")


@dataclass(kw_only=True)
class TaskConfig:
    """One `finetune.<task>` entry. The yaml is the source of every value: the fields without a
    default must be given (the loader refuses an entry without them); the defaulted ones are
    optional per entry, their default meaning "off"."""

    modality: Modality
    label_fraction: float  # low-label fine-tuning, where self-supervision should show
    optim: FinetuneOptim
    probe: ProbeConfig
    eval_batch_size: int
    freeze_steps: int = 0  # encoder frozen for these first updates (wav2vec 2.0 fine-tuning)
    # per-layer lr decay from the head down, for the pretrained encoder (BEiT / data2vec: 0.65);
    # a scratch encoder has no pretrained layers to keep and trains every layer at the full rate
    layer_decay: float
    mask_prob: float = 0.0  # speech: span-mask start probability while fine-tuning (w2v 2.0)
    # speech: a Libri-light-style labeled subset of this much audio (600 = 10 min, 3600 = 1 h,
    # 36000 = 10 h), balanced over speakers; null: label_fraction of the utterances
    labeled_seconds: float | None = None
    # the norm on the pooled features before a classification / regression head: `layer`
    # (BEiT / data2vec image fine-tuning) or `batch` (standardized over the batch, no affine)
    head_norm: str = "layer"

    def validate(self, p: str) -> None:
        self.optim.validate(f"{p}.optim")  # first: the checks below rely on its steps
        check(0 < self.label_fraction <= 1, f"{p}.label_fraction", self.label_fraction, "(0, 1]")
        check(  # frozen for the whole run, the encoder would never be fine-tuned
            0 <= self.freeze_steps < self.optim.steps,
            f"{p}.freeze_steps",
            self.freeze_steps,
            f"[0, optim.steps={self.optim.steps}) (the encoder must train for some updates)",
        )
        check(0 <= self.mask_prob < 1, f"{p}.mask_prob", self.mask_prob, "[0, 1)")
        check(0 < self.layer_decay <= 1, f"{p}.layer_decay", self.layer_decay, "(0, 1]")
        check(
            self.head_norm in HEAD_NORMS, f"{p}.head_norm", self.head_norm, " | ".join(HEAD_NORMS)
        )
        if self.labeled_seconds is not None:
            check(self.labeled_seconds > 0, f"{p}.labeled_seconds", self.labeled_seconds, "> 0")
        self.probe.validate(f"{p}.probe")
        check(self.eval_batch_size >= 1, f"{p}.eval_batch_size", self.eval_batch_size, ">= 1")

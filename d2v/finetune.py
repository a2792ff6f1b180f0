"""Fine-tuning and linear probes on a (pretrained or randomly initialized) encoder.

`finetune` trains any head of `d2v.heads` through its own `loss`; `predict` collects its
`predict` outputs; `probe_scores` trains only a linear head on the frozen encoder.

Dimensions: B batch, T tokens, D width, C classes, N examples.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from d2v.callbacks import LogMetrics
from d2v.config import FinetuneOptim, ProbeConfig, TaskConfig
from d2v.data.shards import stratified_subset
from d2v.downstream import DownstreamTask
from d2v.encoder import Encoder
from d2v.heads import CTCProbe, mean_pool
from d2v.layer_decay import layer_decay_groups
from d2v.schedule import lr_at

log = logging.getLogger(__name__)

Batches = Callable[[], Iterable[tuple[Any, Tensor]]]  # a fresh pass of (input, label) batches


def _forever(batches: Batches) -> Iterator[tuple[Any, Tensor]]:
    while True:
        yield from batches()


def finetune(
    model: nn.Module,
    batches: Batches,
    cfg: FinetuneOptim,
    device: torch.device,
    log_metrics: LogMetrics | None = None,
    bf16: bool = False,
    desc: str = "finetune",
    freeze_steps: int = 0,
    layer_decay: float = 1.0,
) -> list[float]:
    """Fine-tuning for cfg.steps updates; returns the logged training losses.

    The encoder is frozen for the first `freeze_steps` updates (wav2vec 2.0: the new head
    learns first), then trained with the head. `layer_decay` < 1 scales each layer's learning
    rate down from the head (`d2v.layer_decay`).
    """
    model.to(device).train()
    groups = layer_decay_groups(model, model.encoder.depth, layer_decay, cfg.weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    encoder_params = [p for p in model.encoder.parameters() if p.requires_grad]
    data = _forever(batches)
    losses = []
    for step in tqdm(range(cfg.steps), desc=desc, mininterval=2.0, leave=False):
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, min_ratio=0.01)
        for group in optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        if step in (0, freeze_steps):  # freeze at the start, unfreeze once, not every step
            for p in encoder_params:
                p.requires_grad_(step >= freeze_steps)
        source, labels = next(data)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        with autocast:
            loss = model.loss(source.to(device), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        optimizer.step()
        if (step + 1) % 10 == 0 or step + 1 == cfg.steps:
            losses.append(loss.item())
            if log_metrics is not None:
                log_metrics({"train_loss": loss.item(), "lr": lr}, step + 1)
    for p in encoder_params:
        p.requires_grad_(True)
    return losses


def _collect(chunks: list) -> Any:
    """Per-batch outputs -> one tensor when they stack, else a flat list of per-example items."""
    if chunks and all(isinstance(c, Tensor) for c in chunks):
        if len({tuple(c.shape[1:]) for c in chunks}) == 1:
            return torch.cat(chunks)
        return [row for c in chunks for row in c]
    return [item for c in chunks for item in c]


@torch.no_grad()
def predict(model: nn.Module, batches: Iterable[tuple[Any, Tensor]], device: torch.device):
    """The head's predictions and the labels over a pass of `batches`, in eval mode."""
    model.to(device).eval()
    outputs, labels = [], []
    for source, y in batches:
        out = model.predict(source.to(device))
        outputs.append(out.cpu() if isinstance(out, Tensor) else out)
        labels.append(y)
    return _collect(outputs), _collect(labels)


def chance_scores(task: DownstreamTask, batch_size: int) -> dict[str, float]:
    """The task's metrics on its held-out split for a predictor that ignores its input: the
    majority training class (classification), the empty transcript (CTC), a constant
    (regression, whose correlations are undefined and count as 0). The floor a verdict of
    "not learning" compares against."""
    labels = _collect([y for _, y in task.eval_pass(batch_size)])
    n = len(labels)
    if task.head == "ctc":
        scores = task.score([""] * n, labels)
    elif task.head == "regress":
        with warnings.catch_warnings():  # scipy warns that a constant's correlation is undefined
            warnings.simplefilter("ignore")
            scores = task.score(torch.zeros(n), labels)
    else:
        majority = int(np.bincount(np.asarray(task.train_labels, dtype=np.int64)).argmax())
        logits = F.one_hot(torch.full((n,), majority), task.num_classes).float()
        scores = task.score(logits, labels)
    return {k: float(v) if np.isfinite(v) else 0.0 for k, v in scores.items()}


@torch.no_grad()
def extract_features(
    encoder: Encoder, batches: Iterable[tuple[Any, Tensor]], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Mean-pooled last-layer features (N, D) and labels (N,) of a frozen encoder."""
    encoder.to(device).eval()
    feats, labels = [], []
    for source, y in batches:
        out = encoder(source.to(device))
        feats.append(mean_pool(out.last, out.padding_mask).float().cpu())
        labels.append(y)
    return torch.cat(feats), torch.cat(labels)


def linear_probe(
    train_x: Tensor, train_y: Tensor, num_classes: int, cfg: ProbeConfig, seed: int
) -> Callable[[Tensor], Tensor]:
    """Multinomial logistic regression on standardized features (full batch, AdamW).

    train_x: (N, D), train_y: (N,) -> a function from features (M, D) to logits (M, C).
    """
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    x = (train_x - mean) / std
    g = torch.Generator().manual_seed(seed)
    linear = nn.Linear(x.shape[1], num_classes)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=g) * 0.01)
        linear.bias.zero_()
    opt = torch.optim.AdamW(linear.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    for epoch in range(cfg.epochs):
        for group in opt.param_groups:
            group["lr"] = lr_at(epoch, cfg.lr, 0, cfg.epochs, min_ratio=0.01)
        loss = F.cross_entropy(linear(x), train_y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    linear.requires_grad_(False)
    return lambda feats: linear((feats - mean) / std)


def ridge_probe(train_x: Tensor, train_y: Tensor, alpha: float) -> Callable[[Tensor], Tensor]:
    """Closed-form ridge regression on standardized features: (N, D), (N,) -> f((M, D)) (M,)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    x = torch.cat([(train_x - mean) / std, torch.ones(len(train_x), 1)], 1).double()
    eye = torch.eye(x.shape[1], dtype=torch.float64)
    eye[-1, -1] = 0  # no penalty on the intercept
    w = torch.linalg.solve(x.T @ x + alpha * len(x) * eye, x.T @ train_y.double())
    return lambda feats: (
        torch.cat([(feats - mean) / std, torch.ones(len(feats), 1)], 1).double() @ w
    ).float()


def labeled_subset(task: DownstreamTask, fraction: float, seed: int) -> np.ndarray:
    """Sorted indices of the labeled training subset a run gets (same seed, same subset)."""
    if task.subset is not None:
        return task.subset(fraction, seed)
    return stratified_subset(task.train_labels, fraction, seed)


def probe_scores(
    encoder: Encoder,
    task: DownstreamTask,
    cfg: TaskConfig,
    fraction: float,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    """A linear head on the frozen encoder, trained on a `fraction` of the task's labels and
    scored on its held-out split: {metric: value}. Classification: logistic regression on
    mean-pooled features; regression: ridge; CTC: a linear CTC layer over the frozen frames.
    Leaves the encoder in eval mode."""
    subset = labeled_subset(task, fraction, seed)
    if task.head == "ctc":
        return _ctc_probe(encoder, task, cfg, subset, seed, device)
    train_x, train_y = extract_features(
        encoder, task.train_pass(subset, cfg.eval_batch_size, seed), device
    )
    val_x, val_y = extract_features(encoder, task.eval_pass(cfg.eval_batch_size), device)
    if task.head == "regress":
        regress = ridge_probe(train_x, train_y, cfg.probe.weight_decay)
        return task.score(regress(val_x), val_y)
    classify = linear_probe(train_x, train_y, task.num_classes, cfg.probe, seed)
    return task.score(classify(val_x), val_y)


def _ctc_probe(
    encoder: Encoder,
    task: DownstreamTask,
    cfg: TaskConfig,
    subset: np.ndarray,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    model = CTCProbe(encoder, task.vocab)
    model.encoder.requires_grad_(False)
    optim = FinetuneOptim(
        steps=cfg.probe.epochs,
        batch_size=cfg.optim.batch_size,
        lr=cfg.probe.lr,
        weight_decay=cfg.probe.weight_decay,
        warmup_steps=0,
    )
    torch.manual_seed(seed)
    batches = task.train_pass(subset, optim.batch_size, seed)  # one pass object: epochs differ
    finetune(
        model,
        lambda: batches,
        optim,
        device,
        desc="ctc probe",
    )
    model.encoder.requires_grad_(True)
    scores = task.score(*predict(model, task.eval_pass(cfg.eval_batch_size), device))
    encoder.eval()
    return scores

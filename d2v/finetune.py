"""Downstream heads on a (pretrained or randomly initialized) encoder: full fine-tuning of
encoder + mean-pooled linear head, and a linear probe on frozen mean-pooled features.

Dimensions: B batch, T tokens, D width, C classes, N examples.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from d2v.config import FinetuneOptim, ProbeConfig, TaskConfig
from d2v.data.shards import stratified_subset
from d2v.downstream import DownstreamTask
from d2v.encoder import Encoder
from d2v.schedule import lr_at
from d2v.tracking import Tracker
from d2v.train import param_groups

log = logging.getLogger(__name__)

Batches = Callable[[], Iterable[tuple[Tensor, Tensor]]]  # a fresh pass of (input, label) batches


def mean_pool(last: Tensor, padding_mask: Tensor | None) -> Tensor:
    """last: (B, T, D), padding_mask: (B, T) True = padding -> (B, D) mean over real tokens."""
    if padding_mask is None:
        return last.mean(1)
    keep = (~padding_mask).unsqueeze(-1).to(last.dtype)
    return (last * keep).sum(1) / keep.sum(1).clamp(min=1)


class Classifier(nn.Module):
    def __init__(self, encoder: Encoder, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.fc_norm = nn.LayerNorm(encoder.dim)
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


def _forever(batches: Batches) -> Iterator[tuple[Tensor, Tensor]]:
    while True:
        yield from batches()


def finetune(
    model: Classifier,
    batches: Batches,
    cfg: FinetuneOptim,
    device: torch.device,
    tracker: Tracker,
    bf16: bool = False,
    desc: str = "finetune",
) -> list[float]:
    """Full fine-tuning for cfg.steps updates; returns the logged training losses."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    data = _forever(batches)
    losses = []
    for step in tqdm(range(cfg.steps), desc=desc, mininterval=2.0, leave=False):
        lr = lr_at(step, cfg.lr, cfg.warmup_steps, cfg.steps, min_ratio=0.01)
        for group in optimizer.param_groups:
            group["lr"] = lr
        source, labels = next(data)
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()
        with autocast:
            loss = F.cross_entropy(model(source.to(device)).float(), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        optimizer.step()
        if (step + 1) % 10 == 0 or step + 1 == cfg.steps:
            losses.append(loss.item())
            tracker.log_metrics({"train_loss": loss.item(), "lr": lr}, step=step + 1)
    return losses


@torch.no_grad()
def predict(
    model: Classifier, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Logits (N, C) and labels (N,) over a pass of `batches`, in eval mode."""
    model.to(device).eval()
    logits, labels = [], []
    for source, y in batches:
        logits.append(model(source.to(device)).float().cpu())
        labels.append(y)
    return torch.cat(logits), torch.cat(labels)


@torch.no_grad()
def extract_features(
    encoder: Encoder, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device
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


def probe_scores(
    encoder: Encoder,
    task: DownstreamTask,
    cfg: TaskConfig,
    fraction: float,
    seed: int,
    device: torch.device,
) -> dict[str, float]:
    """A linear probe of a frozen encoder, trained on a class-balanced `fraction` of the task's
    labels and scored on its held-out split: {metric: value}. Leaves the encoder in eval mode."""
    subset = stratified_subset(task.train_labels, fraction, seed)
    train_x, train_y = extract_features(
        encoder, task.train_pass(subset, cfg.eval_batch_size, seed), device
    )
    val_x, val_y = extract_features(encoder, task.eval_pass(cfg.eval_batch_size), device)
    classify = linear_probe(train_x, train_y, task.num_classes, cfg.probe, seed)
    return task.score(classify(val_x), val_y)

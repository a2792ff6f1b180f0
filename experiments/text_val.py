"""Text fine-tuning, pretrained against scratch, scored on a validation sixth carved from each
task's train split (fixed permutation, seed 1234), never on the reported dev split: the README's
text experiments.

Run in a clone where `prepare@text` and `pretrain@text` ran:
    python experiments/text_val.py sst2,stsb,mrpc,cola                # full labels, 300 steps
    python experiments/text_val.py sst2,stsb,mrpc,cola --labels 0.1 --steps 150
    python experiments/text_val.py sst2 --probe ffn   # linear probes on each block's output
Seeds 0 1 2 per arm, two worker processes; one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from d2v.config.base import Sublayer
from d2v.data.meta import TextMeta, read_meta
from d2v.data.shards import stratified_subset
from d2v.data.text_shards import load_glue_split
from d2v.downstream import build_model
from d2v.finetune import finetune, linear_probe, predict
from d2v.heads import mean_pool
from d2v.modalities.text import _Pass, special_ids
from d2v.params_io import read_params
from d2v.pool import run_all
from d2v.runs.finetune import init_encoder, load_task

PREPARED, PRETRAINED = Path("data/prepared/text"), Path("models/text/pretrained")
INITS, SEEDS = ("pretrained", "scratch"), (0, 1, 2)


def split(task_name: str):
    """The task's train split, its pad id, and (train rows kept, validation rows)."""
    train = load_glue_split(PREPARED, task_name, "train")
    pad = special_ids(read_meta(PREPARED, TextMeta))["pad"]
    n = len(train.labels)
    perm = np.random.default_rng(1234).permutation(n)
    return train, pad, np.sort(perm[n // 6 :]), np.sort(perm[: n // 6])


def finetuned_score(task_name: str, labels: float, steps: int, lr: float, init: str, seed: int):
    torch.set_num_threads(1)
    params = read_params(Path("params.yaml"))
    cfg = params.finetune[task_name]
    optim = dataclasses.replace(cfg.optim, steps=steps, lr=lr, warmup_steps=max(1, steps // 10))
    cfg = dataclasses.replace(cfg, optim=optim)
    task = load_task(params, task_name, PREPARED)
    train, pad, keep, val = split(task_name)
    subset = keep[stratified_subset(task.train_labels[keep], labels, seed)]
    model = build_model(task, init_encoder(task, init, seed, PRETRAINED), cfg)
    batches = _Pass(train.input_ids, train.labels, subset, optim.batch_size, pad, seed)
    layer_decay = cfg.layer_decay if init == "pretrained" else 1.0
    device = torch.device("cpu")
    finetune(
        model,
        lambda: batches,
        optim,
        device,
        None,
        False,
        freeze_steps=cfg.freeze_steps,
        layer_decay=layer_decay,
    )
    held_out = _Pass(train.input_ids, train.labels, val, 256, pad, None)
    return task.score(*predict(model, held_out, device))["glue"]


@torch.no_grad()
def block_features(encoder, train, rows, pad: int, sublayer: str):
    """Every block's output (and the last layer's), mean-pooled over tokens: lists of (N, D)."""
    encoder.eval()
    feats, ys = None, []
    for src, y in _Pass(train.input_ids, train.labels, rows, 256, pad, None):
        out = encoder(src, collect=Sublayer(sublayer))
        pooled = [mean_pool(h, out.padding_mask) for h in [*out.layers, out.last]]
        feats = [[] for _ in pooled] if feats is None else feats
        for f, p in zip(feats, pooled, strict=True):
            f.append(p)
        ys.append(y)
    return [torch.cat(f) for f in feats], torch.cat(ys)


def block_probes(task_name: str, sublayer: str) -> dict:
    """Linear probes (classification tasks) on each block's frozen features, pretrained and at
    random init (seed 0)."""
    params = read_params(Path("params.yaml"))
    cfg = params.finetune[task_name]
    task = load_task(params, task_name, PREPARED)
    train, pad, keep, val = split(task_name)
    result = {}
    for init in INITS:
        encoder = init_encoder(task, init, 0, PRETRAINED)
        tx, ty = block_features(encoder, train, keep, pad, sublayer)
        vx, vy = block_features(encoder, train, val, pad, sublayer)
        result[init] = [
            round(task.score(linear_probe(a, ty, task.num_classes, cfg.probe, 0)(b), vy)["glue"], 2)
            for a, b in zip(tx, vx, strict=True)
        ]
    return {"task": task_name, "sublayer": sublayer, "blocks_then_last": result}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tasks", help="comma-separated task names")
    ap.add_argument("--labels", type=float, default=1.0, help="label fraction")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--probe", metavar="SUBLAYER", help="block probes instead of fine-tuning")
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    if args.probe:
        for t in tasks:
            print(json.dumps(block_probes(t, args.probe)))
        return
    start = time.time()
    jobs = [
        (t, args.labels, args.steps, args.lr, i, s) for t in tasks for i in INITS for s in SEEDS
    ]
    scores: dict = {}
    for job, score in zip(jobs, run_all(finetuned_score, jobs, 2), strict=True):
        scores.setdefault(job[0], {}).setdefault(job[4], []).append(round(score, 2))
    avg = {i: statistics.mean(statistics.mean(scores[t][i]) for t in tasks) for i in INITS}
    out = {"labels": args.labels, "steps": args.steps, "lr": args.lr, "scores": scores, "avg": avg}
    print(json.dumps({**out, "wall_s": round(time.time() - start)}))


if __name__ == "__main__":
    main()

"""Speech dev-speaker CER of `finetune@librispeech`'s fine-tuning, for choosing pretraining
settings without looking at the test speakers (the README's dev tables).

Run in a clone where `prepare@speech` (and, for a pretrained arm, `pretrain@speech`) ran:
    python experiments/speech_dev_cer.py models/speech/pretrained 0 1 2
    python experiments/speech_dev_cer.py scratch 0 1 2 --labeled-seconds 273
One JSON line per fine-tuning seed, then their mean and sample std. Two worker processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import tempfile
from pathlib import Path

import torch

from d2v.finetune import predict
from d2v.params_io import read_params
from d2v.pool import run_all
from d2v.runs.finetune import finetune_one, finetuned_model, load_task

PREPARED = Path("data/prepared/speech")


def dev_cer(encoder: str, seed: int, labeled_seconds: float | None, steps: int | None) -> dict:
    torch.set_num_threads(1)
    params = read_params(Path("params.yaml"))
    cfg = params.finetune["librispeech"]
    if labeled_seconds is not None:
        cfg = dataclasses.replace(cfg, labeled_seconds=labeled_seconds)
    if steps is not None:
        cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, steps=steps))
    params.finetune["librispeech"] = cfg
    init = "scratch" if encoder == "scratch" else "pretrained"
    task = load_task(params, "librispeech", PREPARED)
    with tempfile.TemporaryDirectory() as out:  # the stage's own run: same subset, same training
        run = finetune_one(params, "librispeech", PREPARED, Path(encoder), Path(out), init, seed)
        model = finetuned_model(params, task, Path(out), init, seed)
    scores = task.score(*predict(model, task.extra_evals["dev"](32), torch.device("cpu")))
    labeled = run["labeled_examples"]
    return {"encoder": encoder, "seed": seed, "labeled": labeled, "dev_cer": scores["cer"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("encoder", help="a pretrained encoder's directory, or 'scratch'")
    ap.add_argument("seeds", type=int, nargs="+")
    ap.add_argument("--labeled-seconds", type=float, default=None)
    ap.add_argument("--steps", type=int, default=None, help="CTC updates (default: params)")
    args = ap.parse_args()
    jobs = [(args.encoder, s, args.labeled_seconds, args.steps) for s in args.seeds]
    cers = []
    for result in run_all(dev_cer, jobs, 2):
        cers.append(result["dev_cer"])
        print(json.dumps(result), flush=True)
    spread = statistics.stdev(cers) if len(cers) > 1 else 0.0
    print(json.dumps({"dev_cer_mean": statistics.mean(cers), "dev_cer_std": spread}))


if __name__ == "__main__":
    main()

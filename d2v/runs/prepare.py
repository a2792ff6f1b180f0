"""prepare@<modality>: decode and normalize raw data into shards that load fast.

vision: decoded, resized uint8 image shards; speech: 16 kHz normalized waveforms sorted by
length and a character vocabulary; text: a byte-level BPE trained on the corpus, packed
pretraining blocks and encoded GLUE inputs.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from d2v.config import Modality, Params, SpeechDataConfig
from d2v.tracking import Tracker

log = logging.getLogger(__name__)


def speech_splits(cfg: SpeechDataConfig) -> tuple[dict[str, list[str]], list[str], str]:
    """Prepared split -> raw subsets, the eval splits (headline first) and the dev split."""
    if cfg.source == "librispeech":
        splits = {"train": list(cfg.train_subsets), **{s: [s] for s in cfg.eval_subsets}}
        dev = next((s for s in cfg.eval_subsets if s.startswith("dev")), cfg.eval_subsets[0])
        return splits, list(cfg.eval_subsets), dev
    splits = {"train": ["train"], "dev": ["dev"], "test": ["test"], "real": ["real"]}
    return splits, ["test", "real", "dev"], "dev"


def run_prepare(params: Params, modality: Modality, raw_dir: Path, out_dir: Path) -> dict:
    tracker = Tracker(params.tracking)
    cfg = getattr(params.data, modality.value)
    with tracker.run(
        f"prepare/{modality.value}",
        tags={"stage": "prepare", "modality": modality.value, "data_source": cfg.source},
        params={"data": {modality.value: cfg}},
    ):
        if modality == Modality.vision:
            from d2v.data.image_folder import prepare_image_folder

            meta = prepare_image_folder(
                raw_dir, out_dir, cfg.image_size, cfg.channels, cfg.on_corrupt
            )
            tracker.log_metrics({f"images_{k}": v for k, v in meta["counts"].items()})
            skipped = meta["skipped"]["count"]
        elif modality == Modality.speech:
            from d2v.data.audio_shards import prepare_speech

            splits, eval_splits, dev = speech_splits(cfg)
            meta = prepare_speech(
                raw_dir,
                out_dir,
                splits,
                sample_rate=cfg.sample_rate,
                max_seconds=cfg.max_seconds,
                on_corrupt=cfg.on_corrupt,
                limit_per_split=cfg.limit_per_split,
                workers=cfg.workers,
                eval_splits=eval_splits,
                dev_split=dev,
                source=cfg.source,
            )
            tracker.log_metrics(
                {f"utterances_{k}": v["utterances"] for k, v in meta["splits"].items()}
            )
            skipped = meta["skipped"]["count"]
        else:
            from d2v.data.text_shards import prepare_text

            meta = prepare_text(
                raw_dir,
                out_dir,
                vocab_size=cfg.vocab_size,
                block_size=cfg.block_size,
                max_seq_len=cfg.max_seq_len,
                tasks=cfg.tasks,
                on_bad_row=cfg.on_bad_row,
                limit_docs=cfg.limit_docs,
                min_frequency=cfg.min_frequency,
                task_adaptive=cfg.task_adaptive,
            )
            skipped = meta["corpus"]["skipped_lines"] + sum(
                sum(stats["skipped"].values())
                for splits in meta["skipped_rows"].values()
                for stats in splits.values()
            )
        tracker.log_metrics({"skipped": skipped})
        log.info("prepared %s: %d skipped", out_dir, skipped)
        return meta


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v prepare <modality>` (the stage prepare@<modality>)."""
    from d2v.params_io import read_params

    params = read_params(args.params)  # validated before any compute
    m = args.modality.value
    run_prepare(params, args.modality, Path("data/raw") / m, Path("data/prepared") / m)

"""Speech's raw data: a flite-synthesized corpus plus real LibriVox clips, or LibriSpeech, in
LibriSpeech layout (download), decoded into 16 kHz normalized waveforms sorted by length with a
character vocabulary (prepare). Registry entry: d2v/registry.py."""

from __future__ import annotations

from pathlib import Path

from d2v.config import SpeechDataConfig
from d2v.registry import DataStep

SEED = 0  # the synthesized corpus is fixed data, not drawn per run


def download(cfg: SpeechDataConfig, out_dir: Path) -> DataStep:
    if cfg.source == "librispeech":
        from d2v.data.librispeech import download_librispeech

        subsets = list(dict.fromkeys(cfg.train_subsets + cfg.eval_subsets))
        stats = download_librispeech(
            cfg.librispeech_url, subsets, cfg.download_dir, out_dir, cfg.librispeech_md5
        )
        return DataStep(stats, {})
    from d2v.data.flite_corpus import write_flite_corpus, write_real_clips
    from d2v.data.wordnet import wordnet_examples

    sentences = wordnet_examples(cfg.wordnet_dir, "data.speech.wordnet_dir")
    stats = write_flite_corpus(
        out_dir,
        sentences,
        cfg.voices,
        cfg.pitches,
        cfg.speeds,
        cfg.utterances_per_speaker,
        cfg.dev_speakers,
        cfg.test_speakers,
        seed=SEED,
        workers=cfg.workers,
    )
    stats["real"] = write_real_clips(cfg.real_clips_dir, out_dir)
    return DataStep(stats, {})


def speech_splits(cfg: SpeechDataConfig) -> tuple[dict[str, list[str]], list[str], str]:
    """Prepared split -> raw subsets, the eval splits (headline first) and the dev split."""
    if cfg.source == "librispeech":
        splits = {"train": list(cfg.train_subsets), **{s: [s] for s in cfg.eval_subsets}}
        dev = next((s for s in cfg.eval_subsets if s.startswith("dev")), cfg.eval_subsets[0])
        return splits, list(cfg.eval_subsets), dev
    splits = {"train": ["train"], "dev": ["dev"], "test": ["test"], "real": ["real"]}
    return splits, ["test", "real", "dev"], "dev"


def prepare(cfg: SpeechDataConfig, raw_dir: Path, out_dir: Path) -> DataStep:
    from d2v.data.audio_prepare import prepare_speech

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
    metrics = {f"utterances_{k}": v["utterances"] for k, v in meta.splits.items()}
    return DataStep(meta.to_json(), {**metrics, "skipped": meta.skipped["count"]})

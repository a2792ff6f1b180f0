"""download@<modality>: fetch or generate raw data in the on-disk layout the prepare stage reads.

vision: Fashion-MNIST (Debian) or ImageNet archives in ImageNet folder layout;
speech: a flite-synthesized corpus + real LibriVox clips, or LibriSpeech, in LibriSpeech layout;
text: Bible + WordNet corpus and GLUE-format stand-ins, or the GLUE archives + a local corpus.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from d2v.config import Modality, Params, SpeechDataConfig, TextDataConfig, VisionDataConfig
from d2v.tracking import Tracker

log = logging.getLogger(__name__)


def download_vision(cfg: VisionDataConfig, out_dir: Path) -> dict:
    from d2v.data.fashion_mnist import write_fashion_mnist
    from d2v.data.imagenet import imagenet_archives, write_imagenet

    if cfg.source == "fashion_mnist":
        return write_fashion_mnist(cfg.fashion_mnist_dir, out_dir, cfg.limit_per_split)
    archives = imagenet_archives(cfg.imagenet_dir or "")
    return write_imagenet(
        **archives, out_dir=out_dir, md5=cfg.imagenet_md5, limit_classes=cfg.limit_classes
    )


def download_speech(cfg: SpeechDataConfig, out_dir: Path, seed: int) -> dict:
    if cfg.source == "librispeech":
        from d2v.data.librispeech import download_librispeech

        subsets = list(dict.fromkeys(cfg.train_subsets + cfg.eval_subsets))
        return download_librispeech(
            cfg.librispeech_url, subsets, cfg.download_dir, out_dir, cfg.librispeech_md5
        )
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
        seed=seed,
        workers=cfg.workers,
    )
    stats["real"] = write_real_clips(cfg.real_clips_dir, out_dir)
    return stats


def download_text(cfg: TextDataConfig, out_dir: Path, seed: int) -> dict:
    from d2v.atomic import atomic_path

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        if cfg.source == "glue":
            from d2v.data.glue import download_glue

            stats = {
                "glue": download_glue(cfg.tasks, cfg.glue_url, cfg.download_dir, tmp, cfg.glue_md5),
                "corpus": copy_local_corpus(cfg.corpus_path or "", tmp / "corpus", cfg.on_bad_row),
            }
        else:
            from d2v.data.bible import export_bible
            from d2v.data.glue_standins import write_glue_standins
            from d2v.data.text_corpus import write_embedded_corpus

            bibles = {m: export_bible(m) for m in dict.fromkeys([*cfg.sword_modules, "WEB", "KJV"])}
            stats = {
                "corpus": write_embedded_corpus(tmp, cfg.sword_modules, cfg.wordnet_dir, bibles),
                "glue": write_glue_standins(
                    tmp, cfg.vader_dir, seed=seed, wordnet_dir=cfg.wordnet_dir, bibles=bibles
                ),
            }
    return stats


def copy_local_corpus(path: str, out_dir: Path, on_bad_line: str = "skip") -> dict:
    """A user's corpus (a .txt file or folder; a document per line or blank-line separated) as
    one document per line in `out_dir/corpus.txt`; non-UTF-8 lines skipped and counted."""
    from d2v.data.errors import SourceMissingError
    from d2v.data.text_corpus import read_corpus

    if not Path(path).exists():
        raise SourceMissingError(f"the corpus at {path!r}", "data.text.corpus_path")
    out_dir.mkdir(parents=True, exist_ok=True)
    stats: dict = {}
    documents = 0
    with open(out_dir / "corpus.txt", "w", encoding="utf-8") as f:
        for doc in read_corpus(path, on_bad_line=on_bad_line, stats=stats):
            f.write(doc + "\n")  # read_corpus has collapsed the whitespace
            documents += 1
    return {"documents": documents, **stats}


def run_download(params: Params, modality: Modality, out_dir: Path) -> dict:
    tracker = Tracker(params.tracking)
    cfg = getattr(params.data, modality.value)
    with tracker.run(
        f"download/{modality.value}",
        tags={"stage": "download", "modality": modality.value, "data_source": cfg.source},
        params={"data": {modality.value: cfg}},
    ):
        if modality == Modality.vision:
            stats = download_vision(cfg, out_dir)
            tracker.log_metrics({f"images_{k}": v for k, v in stats.get("counts", {}).items()})
        elif modality == Modality.speech:
            stats = download_speech(cfg, out_dir, seed=0)  # data are fixed, not per run
        else:
            stats = download_text(cfg, out_dir, seed=0)
        log.info("wrote %s", out_dir)
        return stats


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v download <modality>` (the stage download@<modality>)."""
    from d2v.params_io import read_params

    params = read_params(args.params)  # validated before any compute
    run_download(params, args.modality, Path("data/raw") / args.modality.value)

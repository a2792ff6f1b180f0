"""Data sources per modality: the embedded default and the full datasets (shared/DATA.md)."""

from __future__ import annotations

from dataclasses import dataclass, field

from d2v.config.base import check, check_limit


@dataclass
class VisionDataConfig:
    source: str = "fashion_mnist"  # fashion_mnist (embedded default) | imagenet (local archives)
    fashion_mnist_dir: str = "/usr/share/datasets/fashion-mnist"
    imagenet_dir: str | None = None  # folder holding ILSVRC2012_img_{train,val}.tar + devkit
    imagenet_md5: dict[str, str | None] = field(default_factory=dict)  # overrides; None skips
    limit_classes: int | None = None  # imagenet smoke tests: first N classes
    image_size: int = 28
    channels: int = 1
    on_corrupt: str = "skip"  # skip (count and log) | fail (stop naming the file)
    limit_per_split: int | None = None  # smoke tests: first N images per split

    def validate(self, p: str) -> None:
        check(
            self.source in ("fashion_mnist", "imagenet"),
            f"{p}.source",
            self.source,
            "one of fashion_mnist, imagenet",
        )
        check(self.image_size >= 4, f"{p}.image_size", self.image_size, ">= 4")
        check(self.channels in (1, 3), f"{p}.channels", self.channels, "1 or 3")
        check(
            self.on_corrupt in ("skip", "fail"), f"{p}.on_corrupt", self.on_corrupt, "skip or fail"
        )
        check_limit(self.limit_classes, f"{p}.limit_classes")
        check_limit(self.limit_per_split, f"{p}.limit_per_split")
        if self.source == "imagenet":
            check(
                bool(self.imagenet_dir),
                f"{p}.imagenet_dir",
                self.imagenet_dir,
                "a folder with the ILSVRC2012 archives when source=imagenet",
            )


@dataclass
class SpeechDataConfig:
    source: str = "flite"  # flite (embedded, synthesized offline) | librispeech (OpenSLR 12)
    sample_rate: int = 16000
    # flite corpus: voices x pitches x speeds = pseudo-speakers, WordNet example sentences
    voices: list[str] = field(default_factory=lambda: ["kal16", "awb", "rms", "slt"])
    pitches: list[float] = field(default_factory=lambda: [95.0, 120.0, 150.0])  # f0 mean, Hz
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.15])  # duration stretch
    utterances_per_speaker: int = 40
    dev_speakers: int = 4
    test_speakers: int = 4
    wordnet_dir: str = "/usr/share/wordnet"
    real_clips_dir: str = "/usr/share/pocketsphinx/test/data/librivox"  # real LibriVox clips
    # LibriSpeech (data=full)
    librispeech_url: str = "https://www.openslr.org/resources/12"
    download_dir: str = "data/downloads/librispeech"  # archives (resumable; outside DVC outs)
    train_subsets: list[str] = field(default_factory=lambda: ["train-clean-100"])
    eval_subsets: list[str] = field(
        default_factory=lambda: ["test-other", "test-clean", "dev-other", "dev-clean"]
    )
    librispeech_md5: dict[str, str | None] = field(default_factory=dict)  # overrides; None skips
    # prepare
    max_seconds: float = 16.0  # longer utterances are skipped and counted (paper crops 15.6 s)
    on_corrupt: str = "skip"  # skip (count and log) | fail (stop naming the file)
    limit_per_split: int | None = None  # smoke tests: first N utterances per split
    workers: int = 2

    def validate(self, p: str) -> None:
        check(
            self.source in ("flite", "librispeech"),
            f"{p}.source",
            self.source,
            "one of flite, librispeech",
        )
        check(self.sample_rate == 16000, f"{p}.sample_rate", self.sample_rate, "16000")
        check(bool(self.voices), f"{p}.voices", self.voices, "a non-empty list of flite voices")
        check(
            bool(self.pitches) and all(40 <= x <= 400 for x in self.pitches),
            f"{p}.pitches",
            self.pitches,
            "a non-empty list of f0 means in [40, 400] Hz",
        )
        check(
            bool(self.speeds) and all(0.3 <= x <= 3 for x in self.speeds),
            f"{p}.speeds",
            self.speeds,
            "a non-empty list of duration stretches in [0.3, 3]",
        )
        n = len(self.voices) * len(self.pitches) * len(self.speeds)
        check(
            self.utterances_per_speaker >= 1,
            f"{p}.utterances_per_speaker",
            self.utterances_per_speaker,
            ">= 1",
        )
        check(self.dev_speakers >= 1, f"{p}.dev_speakers", self.dev_speakers, ">= 1")
        check(
            1 <= self.test_speakers <= n - self.dev_speakers - 1,
            f"{p}.test_speakers",
            self.test_speakers,
            f"[1, {n - self.dev_speakers - 1}] (voices x pitches x speeds = {n} speakers)",
        )
        subsets = ("train-clean-100", "train-clean-360", "train-other-500")
        check(
            bool(self.train_subsets) and all(s in subsets for s in self.train_subsets),
            f"{p}.train_subsets",
            self.train_subsets,
            "a non-empty list of " + ", ".join(subsets),
        )
        evals = ("dev-clean", "dev-other", "test-clean", "test-other")
        check(
            bool(self.eval_subsets) and all(s in evals for s in self.eval_subsets),
            f"{p}.eval_subsets",
            self.eval_subsets,
            "a non-empty list of " + ", ".join(evals),
        )
        check(self.max_seconds > 0, f"{p}.max_seconds", self.max_seconds, "> 0")
        check(
            self.on_corrupt in ("skip", "fail"), f"{p}.on_corrupt", self.on_corrupt, "skip or fail"
        )
        check(self.workers >= 1, f"{p}.workers", self.workers, ">= 1")
        check_limit(self.limit_per_split, f"{p}.limit_per_split")


GLUE_TASK_NAMES = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli")


@dataclass
class TextDataConfig:
    source: str = "embedded"  # embedded (Bible + WordNet, GLUE-format stand-ins) | glue
    sword_modules: list[str] = field(default_factory=lambda: ["WEB", "KJV"])
    wordnet_dir: str = "/usr/share/wordnet"
    vader_dir: str = "data/downloads/vader"  # the vaderSentiment source package (pip download)
    corpus_path: str | None = None  # glue: the pretraining corpus, a .txt file or folder
    glue_url: str = "https://dl.fbaipublicfiles.com/glue/data"
    download_dir: str = "data/downloads/glue"
    glue_md5: dict[str, str | None] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=lambda: ["sst2", "stsb", "mrpc", "cola"])
    vocab_size: int = 8000  # byte-level BPE (paper: 50k, RoBERTa's)
    min_frequency: int = 2
    block_size: int = 128  # pretraining sequence length (paper: 512)
    max_seq_len: int = 128  # GLUE inputs
    on_bad_row: str = "skip"  # skip (count and log) | fail (stop naming the file and line)
    limit_docs: int | None = None  # smoke tests: first N corpus documents
    # task-adaptive pretraining: the tasks' training sentences (never dev / test) join the
    # pretraining corpus this many times (0: the corpus alone)
    task_adaptive: int = 3

    def validate(self, p: str) -> None:
        check(self.source in ("embedded", "glue"), f"{p}.source", self.source, "embedded or glue")
        check(
            bool(self.tasks) and all(t in GLUE_TASK_NAMES for t in self.tasks),
            f"{p}.tasks",
            self.tasks,
            "a non-empty list of " + ", ".join(GLUE_TASK_NAMES),
        )
        check(
            256 + 5 <= self.vocab_size <= 1_000_000,
            f"{p}.vocab_size",
            self.vocab_size,
            "[261, 1000000] (256 bytes + 5 special tokens at least)",
        )
        check(self.min_frequency >= 1, f"{p}.min_frequency", self.min_frequency, ">= 1")
        check(8 <= self.block_size <= 4096, f"{p}.block_size", self.block_size, "[8, 4096]")
        check(8 <= self.max_seq_len <= 4096, f"{p}.max_seq_len", self.max_seq_len, "[8, 4096]")
        check(
            self.on_bad_row in ("skip", "fail"), f"{p}.on_bad_row", self.on_bad_row, "skip or fail"
        )
        check(0 <= self.task_adaptive <= 100, f"{p}.task_adaptive", self.task_adaptive, "[0, 100]")
        check_limit(self.limit_docs, f"{p}.limit_docs")
        if self.source == "glue":
            check(
                bool(self.corpus_path),
                f"{p}.corpus_path",
                self.corpus_path,
                "a local .txt file or folder when source=glue",
            )


@dataclass
class DataConfig:
    vision: VisionDataConfig = field(default_factory=VisionDataConfig)
    speech: SpeechDataConfig = field(default_factory=SpeechDataConfig)
    text: TextDataConfig = field(default_factory=TextDataConfig)

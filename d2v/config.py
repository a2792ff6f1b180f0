"""Typed configs for every params section, built from the composed `params.yaml` and validated
before any compute. Errors name the param (dotted path) and its allowed range."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar


class ConfigError(ValueError):
    """An invalid param: the message names it and its allowed values."""


class Modality(str, enum.Enum):
    vision = "vision"
    speech = "speech"
    text = "text"


class Sublayer(str, enum.Enum):
    """Where in each block the teacher's layer output is read (paper Table 5)."""

    attn = "attn"  # self-attention output
    ffn = "ffn"  # FFN output before the last residual (paper's choice)
    block = "block"  # end of block, after the residual


class Norm(str, enum.Enum):
    instance = "instance"  # over time, per channel (speech)
    layer = "layer"  # over channels, per time step (vision, text)
    none = "none"


class Precision(str, enum.Enum):
    auto = "auto"  # bf16 where the hardware has it (CUDA with bf16), else fp32
    fp32 = "fp32"
    bf16 = "bf16"


@dataclass
class ModelConfig:
    name: str = "micro"
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0

    def validate(self, p: str) -> None:
        _check(self.dim >= 8, f"{p}.dim", self.dim, ">= 8")
        _check(self.depth >= 1, f"{p}.depth", self.depth, ">= 1")
        _check(self.heads >= 1, f"{p}.heads", self.heads, ">= 1")
        _check(
            self.dim % self.heads == 0, f"{p}.dim", self.dim, f"a multiple of heads={self.heads}"
        )
        _check(self.mlp_ratio > 0, f"{p}.mlp_ratio", self.mlp_ratio, "> 0")
        _check(0 <= self.dropout < 1, f"{p}.dropout", self.dropout, "[0, 1)")


@dataclass
class DeepSpeedConfig:
    zero_stage: int = 2
    precision: Precision = Precision.auto
    num_procs: int = 1  # > 1: the stage relaunches itself under torchrun with this many ranks

    def validate(self, p: str) -> None:
        _check(
            self.zero_stage in (0, 1, 2, 3), f"{p}.zero_stage", self.zero_stage, "one of 0, 1, 2, 3"
        )
        _check(self.num_procs >= 1, f"{p}.num_procs", self.num_procs, ">= 1")


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlruns.db"  # MLFLOW_TRACKING_URI overrides
    experiment: str = "d2v"

    def validate(self, p: str) -> None:
        _check(bool(self.experiment), f"{p}.experiment", self.experiment, "a non-empty name")


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
        _check(
            self.source in ("fashion_mnist", "imagenet"),
            f"{p}.source",
            self.source,
            "one of fashion_mnist, imagenet",
        )
        _check(self.image_size >= 4, f"{p}.image_size", self.image_size, ">= 4")
        _check(self.channels in (1, 3), f"{p}.channels", self.channels, "1 or 3")
        _check(
            self.on_corrupt in ("skip", "fail"), f"{p}.on_corrupt", self.on_corrupt, "skip or fail"
        )
        if self.source == "imagenet":
            _check(
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
        default_factory=lambda: ["dev-clean", "dev-other", "test-clean", "test-other"]
    )
    librispeech_md5: dict[str, str | None] = field(default_factory=dict)  # overrides; None skips
    # prepare
    max_seconds: float = 16.0  # longer utterances are skipped and counted (paper crops 15.6 s)
    on_corrupt: str = "skip"  # skip (count and log) | fail (stop naming the file)
    limit_per_split: int | None = None  # smoke tests: first N utterances per split
    workers: int = 2

    def validate(self, p: str) -> None:
        _check(
            self.source in ("flite", "librispeech"),
            f"{p}.source",
            self.source,
            "one of flite, librispeech",
        )
        _check(self.sample_rate == 16000, f"{p}.sample_rate", self.sample_rate, "16000")
        _check(bool(self.voices), f"{p}.voices", self.voices, "a non-empty list of flite voices")
        _check(
            bool(self.pitches) and all(40 <= x <= 400 for x in self.pitches),
            f"{p}.pitches",
            self.pitches,
            "a non-empty list of f0 means in [40, 400] Hz",
        )
        _check(
            bool(self.speeds) and all(0.3 <= x <= 3 for x in self.speeds),
            f"{p}.speeds",
            self.speeds,
            "a non-empty list of duration stretches in [0.3, 3]",
        )
        n = len(self.voices) * len(self.pitches) * len(self.speeds)
        _check(
            self.utterances_per_speaker >= 1,
            f"{p}.utterances_per_speaker",
            self.utterances_per_speaker,
            ">= 1",
        )
        _check(self.dev_speakers >= 1, f"{p}.dev_speakers", self.dev_speakers, ">= 1")
        _check(
            1 <= self.test_speakers <= n - self.dev_speakers - 1,
            f"{p}.test_speakers",
            self.test_speakers,
            f"[1, {n - self.dev_speakers - 1}] (voices x pitches x speeds = {n} speakers)",
        )
        subsets = ("train-clean-100", "train-clean-360", "train-other-500")
        _check(
            bool(self.train_subsets) and all(s in subsets for s in self.train_subsets),
            f"{p}.train_subsets",
            self.train_subsets,
            "a non-empty list of " + ", ".join(subsets),
        )
        evals = ("dev-clean", "dev-other", "test-clean", "test-other")
        _check(
            bool(self.eval_subsets) and all(s in evals for s in self.eval_subsets),
            f"{p}.eval_subsets",
            self.eval_subsets,
            "a non-empty list of " + ", ".join(evals),
        )
        _check(self.max_seconds > 0, f"{p}.max_seconds", self.max_seconds, "> 0")
        _check(
            self.on_corrupt in ("skip", "fail"), f"{p}.on_corrupt", self.on_corrupt, "skip or fail"
        )
        _check(self.workers >= 1, f"{p}.workers", self.workers, ">= 1")


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

    def validate(self, p: str) -> None:
        _check(self.source in ("embedded", "glue"), f"{p}.source", self.source, "embedded or glue")
        _check(
            bool(self.tasks) and all(t in GLUE_TASK_NAMES for t in self.tasks),
            f"{p}.tasks",
            self.tasks,
            "a non-empty list of " + ", ".join(GLUE_TASK_NAMES),
        )
        _check(
            256 + 5 <= self.vocab_size <= 1_000_000,
            f"{p}.vocab_size",
            self.vocab_size,
            "[261, 1000000] (256 bytes + 5 special tokens at least)",
        )
        _check(self.min_frequency >= 1, f"{p}.min_frequency", self.min_frequency, ">= 1")
        _check(8 <= self.block_size <= 4096, f"{p}.block_size", self.block_size, "[8, 4096]")
        _check(8 <= self.max_seq_len <= 4096, f"{p}.max_seq_len", self.max_seq_len, "[8, 4096]")
        _check(
            self.on_bad_row in ("skip", "fail"), f"{p}.on_bad_row", self.on_bad_row, "skip or fail"
        )
        if self.source == "glue":
            _check(
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


@dataclass
class BlockMaskConfig:
    """BEiT block-wise masking; the count is then made exact (data2vec 2.0)."""

    ratio: float = 0.6  # paper: 60% of patches
    min_patches: int = 4  # smallest block, in patches (BEiT: 16 on a 14x14 grid)
    min_aspect: float = 0.3  # aspect ratio range [min_aspect, 1/min_aspect] (BEiT)

    def validate(self, p: str) -> None:
        _check(0 < self.ratio < 1, f"{p}.ratio", self.ratio, "(0, 1)")
        _check(self.min_patches >= 1, f"{p}.min_patches", self.min_patches, ">= 1")
        _check(0 < self.min_aspect <= 1, f"{p}.min_aspect", self.min_aspect, "(0, 1]")


@dataclass
class SpanMaskConfig:
    """wav2vec 2.0 span masking of speech frames (data2vec speech uses the same)."""

    prob: float = 0.65  # probability that a frame starts a span; ~49% of frames end up masked
    length: int = 10  # frames per span (200 ms at 50 Hz)
    min_spans: int = 2  # fairseq's min_masks: at least this many spans per sample

    def validate(self, p: str) -> None:
        _check(0 < self.prob <= 1, f"{p}.prob", self.prob, "(0, 1]")
        _check(self.length >= 1, f"{p}.length", self.length, ">= 1")
        _check(self.min_spans >= 0, f"{p}.min_spans", self.min_spans, ">= 0")


@dataclass
class TokenMaskConfig:
    """BERT token masking (data2vec text); span > 1 masks runs of tokens instead."""

    prob: float = 0.15  # fraction of maskable tokens selected (BERT)
    mask_frac: float = 0.8  # of the selected: replaced by the mask token
    random_frac: float = 0.1  # of the selected: replaced by a random token; the rest are kept
    span: int = 1  # 1: BERT tokens; data2vec text's span option: span 4 with prob 0.35

    def validate(self, p: str) -> None:
        _check(0 < self.prob < 1, f"{p}.prob", self.prob, "(0, 1)")
        _check(0 <= self.mask_frac <= 1, f"{p}.mask_frac", self.mask_frac, "[0, 1]")
        _check(0 <= self.random_frac <= 1, f"{p}.random_frac", self.random_frac, "[0, 1]")
        _check(
            self.mask_frac + self.random_frac <= 1 + 1e-9,  # 0.9 + 0.1 in floating point
            f"{p}.random_frac",
            self.random_frac,
            f"[0, 1 - mask_frac={1 - self.mask_frac:g}]",
        )
        _check(self.span >= 1, f"{p}.span", self.span, ">= 1")


@dataclass
class EmaConfig:
    tau_start: float = 0.999
    tau_end: float = 0.9999
    anneal_steps: int = 1000  # linear from tau_start to tau_end, constant after

    def validate(self, p: str) -> None:
        _check(0 < self.tau_start <= 1, f"{p}.tau_start", self.tau_start, "(0, 1]")
        _check(0 < self.tau_end <= 1, f"{p}.tau_end", self.tau_end, "(0, 1]")
        _check(self.anneal_steps >= 0, f"{p}.anneal_steps", self.anneal_steps, ">= 0")


@dataclass
class TargetConfig:
    top_k: int | None = None  # None: the paper's K for the modality, scaled to the model depth
    norm: Norm = Norm.layer  # per-layer normalization before averaging
    final_norm: Norm = Norm.none  # normalization of the average
    sublayer: Sublayer = Sublayer.ffn

    def validate(self, p: str, depth: int) -> None:
        if self.top_k is not None:
            _check(1 <= self.top_k <= depth, f"{p}.top_k", self.top_k, f"[1, depth={depth}]")


@dataclass
class LossConfig:
    beta: float = 2.0  # smooth L1 transition point; 0 = L2
    scale_by_dim: bool = True  # divide the per-token sum by sqrt(D) (fairseq data2vec)

    def validate(self, p: str) -> None:
        _check(self.beta >= 0, f"{p}.beta", self.beta, ">= 0")


@dataclass
class CollapseConfig:
    """Stop a run whose targets stop varying: collapse shows first as falling target std."""

    min_target_std: float = 0.01
    check_after: int = 50  # steps before the check starts (targets start near-constant)
    patience: int = 3  # consecutive logged checks under the threshold

    def validate(self, p: str) -> None:
        _check(self.min_target_std >= 0, f"{p}.min_target_std", self.min_target_std, ">= 0")
        _check(self.patience >= 1, f"{p}.patience", self.patience, ">= 1")


@dataclass
class OptimConfig:
    steps: int = 400
    batch_size: int = 128  # global, over all ranks
    lr: float = 1e-3
    min_lr_ratio: float = 0.01
    warmup_steps: int = 40
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 3.0  # 0 = off

    def validate(self, p: str) -> None:
        _check_budget(self, p)
        _check(0 <= self.min_lr_ratio <= 1, f"{p}.min_lr_ratio", self.min_lr_ratio, "[0, 1]")
        _check(0 <= self.beta1 < 1, f"{p}.beta1", self.beta1, "[0, 1)")
        _check(0 <= self.beta2 < 1, f"{p}.beta2", self.beta2, "[0, 1)")
        _check(self.grad_clip >= 0, f"{p}.grad_clip", self.grad_clip, ">= 0")


@dataclass
class VisionPretrainConfig:
    patch_size: int = 4
    pos: str = "sincos"  # sincos (fixed 2-D) | learned
    mask: BlockMaskConfig = field(default_factory=BlockMaskConfig)
    ema: EmaConfig = field(default_factory=lambda: EmaConfig(0.9998, 0.9998, 0))
    targets: TargetConfig = field(
        default_factory=lambda: TargetConfig(None, Norm.layer, Norm.layer, Sublayer.ffn)
    )
    loss: LossConfig = field(default_factory=lambda: LossConfig(beta=2.0))
    optim: OptimConfig = field(default_factory=OptimConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    shared: list[str] = field(default_factory=list)  # encoder submodules the teacher reuses
    checkpoint_every: int = 100
    log_every: int = 10

    def validate(self, p: str, model: ModelConfig, image_size: int) -> None:
        _check(
            self.patch_size >= 1 and image_size % self.patch_size == 0,
            f"{p}.patch_size",
            self.patch_size,
            f"a divisor of data.vision.image_size={image_size}",
        )
        _check(self.pos in ("sincos", "learned"), f"{p}.pos", self.pos, "sincos or learned")
        self.mask.validate(f"{p}.mask")
        _validate_method(self, p, model)


def _validate_method(cfg: Any, p: str, model: ModelConfig) -> None:
    """The checks every modality's pretraining config shares."""
    cfg.ema.validate(f"{p}.ema")
    cfg.targets.validate(f"{p}.targets", model.depth)
    cfg.loss.validate(f"{p}.loss")
    cfg.optim.validate(f"{p}.optim")
    cfg.collapse.validate(f"{p}.collapse")
    _check(cfg.checkpoint_every >= 1, f"{p}.checkpoint_every", cfg.checkpoint_every, ">= 1")
    _check(cfg.log_every >= 1, f"{p}.log_every", cfg.log_every, ">= 1")


@dataclass
class SpeechPretrainConfig:
    # conv feature encoder (paper: 512 channels; kernels/strides give 16 kHz -> 50 Hz)
    conv_channels: int = 32
    conv_kernels: list[int] = field(default_factory=lambda: [10, 3, 3, 3, 3, 2, 2])
    conv_strides: list[int] = field(default_factory=lambda: [5, 2, 2, 2, 2, 2, 2])
    pos_kernel: int = 128  # conv positional encoding (wav2vec 2.0: 128, 16 groups)
    pos_groups: int = 16
    crop_seconds: float = 4.0  # pretraining batches: utterances cropped / padded to this
    mask: SpanMaskConfig = field(default_factory=SpanMaskConfig)
    ema: EmaConfig = field(default_factory=lambda: EmaConfig(0.999, 0.9999, 1000))
    targets: TargetConfig = field(
        default_factory=lambda: TargetConfig(None, Norm.instance, Norm.none, Sublayer.ffn)
    )
    loss: LossConfig = field(default_factory=lambda: LossConfig(beta=0.0))
    optim: OptimConfig = field(default_factory=OptimConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    # the teacher reuses the student's CNN features and positional conv (paper: shared, not EMA)
    shared: list[str] = field(
        default_factory=lambda: [
            "frontend.features",
            "frontend.feature_norm",
            "frontend.proj",
            "frontend.pos_conv",
        ]
    )
    checkpoint_every: int = 100
    log_every: int = 10

    def validate(self, p: str, model: ModelConfig) -> None:
        _check(self.conv_channels >= 1, f"{p}.conv_channels", self.conv_channels, ">= 1")
        _check(
            bool(self.conv_kernels) and all(k >= 1 for k in self.conv_kernels),
            f"{p}.conv_kernels",
            self.conv_kernels,
            "a non-empty list of ints >= 1",
        )
        _check(
            len(self.conv_strides) == len(self.conv_kernels)
            and all(s >= 1 for s in self.conv_strides),
            f"{p}.conv_strides",
            self.conv_strides,
            f"{len(self.conv_kernels)} ints >= 1 (one per conv_kernels entry)",
        )
        _check(self.pos_kernel >= 1, f"{p}.pos_kernel", self.pos_kernel, ">= 1")
        _check(
            self.pos_groups >= 1 and model.dim % self.pos_groups == 0,
            f"{p}.pos_groups",
            self.pos_groups,
            f"a divisor of model.dim={model.dim}",
        )
        _check(self.crop_seconds >= 0.5, f"{p}.crop_seconds", self.crop_seconds, ">= 0.5")
        self.mask.validate(f"{p}.mask")
        _validate_method(self, p, model)


@dataclass
class TextPretrainConfig:
    mask: TokenMaskConfig = field(default_factory=TokenMaskConfig)
    ema: EmaConfig = field(default_factory=lambda: EmaConfig(0.999, 0.9999, 1000))
    targets: TargetConfig = field(
        default_factory=lambda: TargetConfig(None, Norm.layer, Norm.none, Sublayer.ffn)
    )
    loss: LossConfig = field(default_factory=lambda: LossConfig(beta=4.0))
    optim: OptimConfig = field(default_factory=OptimConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    # the teacher reuses the student's embeddings and positions (paper: shared, not EMA)
    shared: list[str] = field(
        default_factory=lambda: ["frontend.embed", "frontend.pos", "frontend.norm"]
    )
    checkpoint_every: int = 100
    log_every: int = 10

    def validate(self, p: str, model: ModelConfig) -> None:
        self.mask.validate(f"{p}.mask")
        _validate_method(self, p, model)


@dataclass
class PretrainConfig:
    vision: VisionPretrainConfig = field(default_factory=VisionPretrainConfig)
    speech: SpeechPretrainConfig = field(default_factory=SpeechPretrainConfig)
    text: TextPretrainConfig = field(default_factory=TextPretrainConfig)


@dataclass
class FinetuneOptim:
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 30

    def validate(self, p: str) -> None:
        _check_budget(self, p)


@dataclass
class ProbeConfig:
    """Linear probe on frozen mean-pooled features: cheap, used by sweeps."""

    label_fraction: float = 1.0
    epochs: int = 100  # full-batch passes of the logistic regression
    lr: float = 0.1
    weight_decay: float = 1e-4

    def validate(self, p: str) -> None:
        _check(0 < self.label_fraction <= 1, f"{p}.label_fraction", self.label_fraction, "(0, 1]")
        _check(self.epochs >= 1, f"{p}.epochs", self.epochs, ">= 1")
        _check(self.lr > 0, f"{p}.lr", self.lr, "> 0")


@dataclass
class TaskConfig:
    modality: Modality = Modality.vision
    label_fraction: float = 0.01  # low-label fine-tuning, where self-supervision should show
    optim: FinetuneOptim = field(default_factory=FinetuneOptim)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    eval_batch_size: int = 512
    freeze_steps: int = 0  # encoder frozen for these first updates (wav2vec 2.0 fine-tuning)
    mask_prob: float = 0.0  # speech: span-mask start probability while fine-tuning (w2v 2.0)
    # speech: a Libri-light-style labeled subset of this much audio (600 = 10 min, 3600 = 1 h,
    # 36000 = 10 h), balanced over speakers; null: label_fraction of the utterances
    labeled_seconds: float | None = None

    def validate(self, p: str) -> None:
        _check(0 < self.label_fraction <= 1, f"{p}.label_fraction", self.label_fraction, "(0, 1]")
        _check(
            0 <= self.freeze_steps <= self.optim.steps,
            f"{p}.freeze_steps",
            self.freeze_steps,
            f"[0, optim.steps={self.optim.steps}]",
        )
        _check(0 <= self.mask_prob < 1, f"{p}.mask_prob", self.mask_prob, "[0, 1)")
        if self.labeled_seconds is not None:
            _check(self.labeled_seconds > 0, f"{p}.labeled_seconds", self.labeled_seconds, "> 0")
        self.optim.validate(f"{p}.optim")
        self.probe.validate(f"{p}.probe")
        _check(self.eval_batch_size >= 1, f"{p}.eval_batch_size", self.eval_batch_size, ">= 1")


@dataclass
class SweepDim:
    """One searched param. scale: linear | log | int | one_minus_log (samples log(1 - x), the
    way an EMA decay matters: 0.999 vs 0.9999 is a 10x longer memory) | categorical."""

    param: str  # dotted params path, set as a Hydra override
    scale: str = "linear"
    low: float | None = None
    high: float | None = None  # int scale: None = the model depth
    choices: list[str] | None = None
    enabled: bool = True

    def validate(self, p: str) -> None:
        scales = ("linear", "log", "int", "one_minus_log", "categorical")
        _check(self.scale in scales, f"{p}.scale", self.scale, "one of " + ", ".join(scales))
        if self.scale == "categorical":
            _check(bool(self.choices), f"{p}.choices", self.choices, "a non-empty list")
            return
        _check(self.low is not None, f"{p}.low", self.low, "a number")
        if self.scale in ("log", "one_minus_log"):
            _check(self.low > 0, f"{p}.low", self.low, "> 0 on a log scale")
        if self.scale == "one_minus_log":
            _check(self.high is not None and self.high < 1, f"{p}.high", self.high, "< 1")
        if self.high is not None:
            _check(self.high > self.low, f"{p}.high", self.high, f"> low={self.low}")


@dataclass
class SweepConfig:
    task: str = "imagenet"  # whose linear probe scores a trial
    n_trials: int = 4  # finished trials (complete + pruned + failed) the study stops at
    direction: str = "maximize"
    storage: str | None = None  # None: an SQLite file beside the data; any SQLAlchemy URL
    study_name: str = "d2v"
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int = 0
    report_every: int = 100  # steps between proxy reports (pruning points)
    heartbeat_s: int = 20  # a worker's liveness beat in the storage
    grace_s: int = 120  # a RUNNING trial without a beat for this long is failed (its worker died)
    probe_label_fraction: float = 0.05
    overrides: list[str] = field(default_factory=list)  # Hydra overrides: the trial budget
    space: dict[str, SweepDim] = field(default_factory=dict)

    def validate(self, p: str, tasks: dict) -> None:
        _check(self.task in tasks, f"{p}.task", self.task, f"one of {sorted(tasks)}")
        _check(self.n_trials >= 1, f"{p}.n_trials", self.n_trials, ">= 1")
        _check(
            self.direction in ("maximize", "minimize"),
            f"{p}.direction",
            self.direction,
            "maximize or minimize",
        )
        _check(self.sampler in ("tpe", "random"), f"{p}.sampler", self.sampler, "tpe or random")
        pruners = ("median", "hyperband", "successive_halving", "none")
        _check(self.pruner in pruners, f"{p}.pruner", self.pruner, "one of " + ", ".join(pruners))
        _check(self.report_every >= 1, f"{p}.report_every", self.report_every, ">= 1")
        _check(
            0 < self.probe_label_fraction <= 1,
            f"{p}.probe_label_fraction",
            self.probe_label_fraction,
            "(0, 1]",
        )
        for name, dim in self.space.items():
            dim.validate(f"{p}.space.{name}")


@dataclass
class Params:
    """The whole composed `params.yaml`."""

    seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    model: ModelConfig = field(default_factory=ModelConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: dict[str, TaskConfig] = field(default_factory=dict)
    sweep: dict[str, SweepConfig] = field(default_factory=dict)  # per modality

    def validate(self) -> Params:
        _check(
            len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds),
            "seeds",
            self.seeds,
            "a non-empty list of distinct ints",
        )
        self.model.validate("model")
        self.deepspeed.validate("deepspeed")
        self.tracking.validate("tracking")
        self.data.vision.validate("data.vision")
        self.data.speech.validate("data.speech")
        self.data.text.validate("data.text")
        self.pretrain.vision.validate("pretrain.vision", self.model, self.data.vision.image_size)
        self.pretrain.speech.validate("pretrain.speech", self.model)
        self.pretrain.text.validate("pretrain.text", self.model)
        for name, task in self.finetune.items():
            task.validate(f"finetune.{name}")
        for name, sweep in self.sweep.items():
            _check(
                name in Modality.__members__,
                "sweep",
                name,
                "keys naming modalities: " + ", ".join(m.value for m in Modality),
            )
            sweep.validate(f"sweep.{name}", self.finetune)
        return self


def _check_budget(cfg: OptimConfig | FinetuneOptim, p: str) -> None:
    """The checks every optimizer config shares."""
    _check(cfg.steps >= 1, f"{p}.steps", cfg.steps, ">= 1")
    _check(cfg.batch_size >= 1, f"{p}.batch_size", cfg.batch_size, ">= 1")
    _check(cfg.lr > 0, f"{p}.lr", cfg.lr, "> 0")
    _check(
        0 <= cfg.warmup_steps <= cfg.steps,
        f"{p}.warmup_steps",
        cfg.warmup_steps,
        f"[0, steps={cfg.steps}]",
    )
    _check(cfg.weight_decay >= 0, f"{p}.weight_decay", cfg.weight_decay, ">= 0")


def _check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid param {name} = {value!r}: allowed {allowed}")


T = TypeVar("T")


def from_dict(cls: type[T], data: Any, path: str = "") -> T:
    """Build dataclass `cls` from nested dicts, refusing unknown keys and values of the wrong type."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid param {path or '<root>'} = {data!r}: allowed a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"unknown param {where}{unknown[0]}: allowed keys {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{path}.{k}" if path else k) for k, v in data.items()}
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, path)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = ", ".join(m.value for m in tp)
            raise ConfigError(
                f"invalid param {path} = {value!r}: allowed one of {allowed}"
            ) from None
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"invalid param {path} = {value!r}: allowed a list")
        return [_coerce(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        _, inner = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"invalid param {path} = {value!r}: allowed a mapping")
        return {k: _coerce(inner, v, f"{path}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not (
        isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    ):
        raise ConfigError(
            f"invalid param {path} = {value!r}: allowed a value of type {tp.__name__}"
        )
    return value


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config (enums as their values), for saving and tracking."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj


def load_params(data: dict) -> Params:
    """Typed, validated params from the composed dict; raises ConfigError before any compute."""
    return from_dict(Params, data).validate()

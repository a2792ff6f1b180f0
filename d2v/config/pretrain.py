"""Pretraining per modality: the frontend, the method in use (`method: v1 | v2`) and each
method's own block (`v1:` data2vec, `v2:` data2vec 2.0), so switching the method switches every
setting that differs between them (`dvc exp run -S pretrain.vision.method=v2`).

The defaults are the laptop profile of conf/config.yaml; `scale=paper` sets the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from d2v.config.base import Norm, Sublayer, check
from d2v.config.masks import (
    BlockMaskConfig,
    FixedTokenMaskConfig,
    InverseBlockMaskConfig,
    SpanMaskConfig,
    TokenMaskConfig,
)
from d2v.config.method import (
    CollapseConfig,
    DecoderConfig,
    EmaConfig,
    LossConfig,
    Method,
    MethodConfig,
    OptimConfig,
    TargetConfig,
    V2Config,
)
from d2v.config.runtime import ModelConfig

# --- vision -------------------------------------------------------------------------------


@dataclass
class VisionV1Config(MethodConfig):
    mask: BlockMaskConfig = field(default_factory=BlockMaskConfig)

    def validate(self, p: str, model: ModelConfig) -> None:
        super().validate(p, model)
        self.mask.validate(f"{p}.mask")


@dataclass
class VisionV2Config(V2Config):
    mask: InverseBlockMaskConfig = field(default_factory=lambda: InverseBlockMaskConfig(block=2))

    def validate(self, p: str, model: ModelConfig) -> None:
        super().validate(p, model)
        self.mask.validate(f"{p}.mask")


def _vision_v1() -> VisionV1Config:
    return VisionV1Config(
        ema=EmaConfig(0.999, 0.9999, 1000),
        targets=TargetConfig(None, Norm.layer, Norm.layer, Sublayer.ffn),
        loss=LossConfig(beta=2.0),
        optim=OptimConfig(steps=1000, batch_size=128, lr=0.002, warmup_steps=100),
    )


def _vision_v2() -> VisionV2Config:
    return VisionV2Config(
        ema=EmaConfig(0.999, 0.9999, 500),
        targets=TargetConfig(None, Norm.instance, Norm.layer, Sublayer.ffn),
        loss=LossConfig(beta=0.0),
        optim=OptimConfig(
            steps=500, batch_size=32, lr=0.002, warmup_steps=50, weight_decay=0.05, beta2=0.95
        ),
        clone_batch=8,
        decoder=DecoderConfig(dim=64, layers=3, kernel=3, groups=16),
    )


@dataclass
class PretrainCommon:
    """What a modality's pretraining sets whatever the method."""

    method: Method = Method.v1
    collapse: CollapseConfig = field(default_factory=CollapseConfig)
    shared: list[str] = field(default_factory=list)  # encoder submodules the teacher reuses
    checkpoint_every: int = 200
    log_every: int = 10

    @property
    def active(self) -> MethodConfig:
        """The block of the method in use."""
        return getattr(self, self.method.value)

    def validate_common(self, p: str, model: ModelConfig) -> None:
        for method in Method:  # both blocks, so a switch of method never meets a bad value
            getattr(self, method.value).validate(f"{p}.{method.value}", model)
        self.collapse.validate(f"{p}.collapse")
        check(self.checkpoint_every >= 1, f"{p}.checkpoint_every", self.checkpoint_every, ">= 1")
        check(self.log_every >= 1, f"{p}.log_every", self.log_every, ">= 1")


@dataclass
class VisionPretrainConfig(PretrainCommon):
    method: Method = Method.v2  # the bench: v2 reaches v1's probe in ~1/4 of the time
    patch_size: int = 4
    # sincos (fixed 2-D) | learned; with model.arch paper (BEiT) also relative | shared_relative
    pos: str = "sincos"
    # model.arch paper (BEiT): a layer norm after the last block, as the released pretrained
    # data2vec-vision checkpoints (HF use_mean_pooling false); else none, the mean-pooling
    # head's own norm standing in (the fine-tuned checkpoints)
    final_norm: bool = False
    v1: VisionV1Config = field(default_factory=_vision_v1)
    v2: VisionV2Config = field(default_factory=_vision_v2)

    def validate(self, p: str, model: ModelConfig, image_size: int) -> None:
        check(
            self.patch_size >= 1 and image_size % self.patch_size == 0,
            f"{p}.patch_size",
            self.patch_size,
            f"a divisor of data.vision.image_size={image_size}",
        )
        relative = ("relative", "shared_relative")
        check(
            self.pos in ("sincos", "learned") or (self.pos in relative and model.arch == "paper"),
            f"{p}.pos",
            self.pos,
            "sincos or learned (relative, shared_relative: with model.arch paper)",
        )
        check(
            not self.final_norm or model.arch == "paper",
            f"{p}.final_norm",
            self.final_norm,
            "false (true: with model.arch paper; the generic encoder always has one)",
        )
        self.validate_common(p, model)
        # on the patch grid, each method's mask must hide some patches and keep some
        tokens = (image_size // self.patch_size) ** 2
        r1, r2 = self.v1.mask.ratio, self.v2.mask.ratio
        for method, ratio, masked in (
            ("v1", r1, round(r1 * tokens)),  # masking.block_mask's exact count
            ("v2", r2, tokens - round((1 - r2) * tokens)),  # inverse_block_mask keeps the rest
        ):
            check(
                0 < masked < tokens,
                f"{p}.{method}.mask.ratio",
                ratio,
                f"a share that masks 1 to {tokens - 1} of the {tokens} patches",
            )


# --- speech -------------------------------------------------------------------------------


@dataclass
class SpeechV1Config(MethodConfig):
    mask: SpanMaskConfig = field(default_factory=SpanMaskConfig)

    def validate(self, p: str, model: ModelConfig) -> None:
        super().validate(p, model)
        self.mask.validate(f"{p}.mask")


@dataclass
class SpeechV2Config(V2Config):
    # the same count in every sample; laptop log-mel: spans of 2 at p 0.65 (paper: 5 at 0.5)
    mask: SpanMaskConfig = field(default_factory=lambda: SpanMaskConfig(0.65, 2, 1))

    def validate(self, p: str, model: ModelConfig) -> None:
        super().validate(p, model)
        self.mask.validate(f"{p}.mask")


def _speech_v1() -> SpeechV1Config:
    return SpeechV1Config(
        ema=EmaConfig(0.999, 0.99954, 3000),
        targets=TargetConfig(None, Norm.instance, Norm.none, Sublayer.ffn),
        loss=LossConfig(beta=0.0),
        optim=OptimConfig(steps=3000, batch_size=16, lr=0.001, warmup_steps=300, weight_decay=0.01),
    )


def _speech_v2() -> SpeechV2Config:
    return SpeechV2Config(
        ema=EmaConfig(0.999, 0.99954, 600),
        targets=TargetConfig(None, Norm.instance, Norm.none, Sublayer.ffn),
        loss=LossConfig(beta=0.0),
        optim=OptimConfig(steps=600, batch_size=16, lr=0.001, warmup_steps=60, weight_decay=0.01),
        clone_batch=8,
        decoder=DecoderConfig(dim=32, layers=4, kernel=7, groups=16, input_dropout=0.1),
    )


def _speech_shared() -> list[str]:
    # the teacher reuses the student's CNN features and positional conv (paper: shared, not EMA)
    return ["frontend.features", "frontend.feature_norm", "frontend.proj", "frontend.pos_conv"]


@dataclass
class SpeechPretrainConfig(PretrainCommon):
    method: Method = Method.v1
    # frames from log-mel filterbanks, or from the waveform CNN of wav2vec 2.0 (the paper's)
    frontend: str = "fbank"  # fbank | waveform
    n_mels: int = 80  # fbank: mel bands of 25 ms windows every 10 ms
    fbank_stack: int = 2  # fbank: 10 ms frames stacked per output frame (2: 50 Hz, as the CNN)
    # conv feature encoder (paper: 512 channels; kernels/strides give 16 kHz -> 50 Hz)
    conv_channels: int = 32
    conv_kernels: list[int] = field(default_factory=lambda: [10, 3, 3, 3, 3, 2, 2])
    conv_strides: list[int] = field(default_factory=lambda: [5, 2, 2, 2, 2, 2, 2])
    pos_kernel: int = 19  # conv positions (data2vec audio: 5 layers of 19; wav2vec 2.0: 1 of 128)
    pos_groups: int = 16
    # model.arch paper (data2vec audio): this many conv position layers of pos_kernel (paper:
    # 5 of kernel 19, each with a layer norm); the generic encoder has wav2vec 2.0's one
    pos_layers: int = 5
    crop_seconds: float = 4.0  # pretraining batches: utterances cropped / padded to this
    v1: SpeechV1Config = field(default_factory=_speech_v1)
    v2: SpeechV2Config = field(default_factory=_speech_v2)
    shared: list[str] = field(default_factory=_speech_shared)

    def validate(self, p: str, model: ModelConfig) -> None:
        check(
            self.frontend in ("waveform", "fbank"),
            f"{p}.frontend",
            self.frontend,
            "waveform or fbank",
        )
        check(8 <= self.n_mels <= 256, f"{p}.n_mels", self.n_mels, "[8, 256]")
        check(1 <= self.fbank_stack <= 8, f"{p}.fbank_stack", self.fbank_stack, "[1, 8]")
        check(self.conv_channels >= 1, f"{p}.conv_channels", self.conv_channels, ">= 1")
        check(
            bool(self.conv_kernels) and all(k >= 1 for k in self.conv_kernels),
            f"{p}.conv_kernels",
            self.conv_kernels,
            "a non-empty list of ints >= 1",
        )
        check(
            len(self.conv_strides) == len(self.conv_kernels)
            and all(s >= 1 for s in self.conv_strides),
            f"{p}.conv_strides",
            self.conv_strides,
            f"{len(self.conv_kernels)} ints >= 1 (one per conv_kernels entry)",
        )
        check(self.pos_kernel >= 1, f"{p}.pos_kernel", self.pos_kernel, ">= 1")
        check(self.pos_layers >= 1, f"{p}.pos_layers", self.pos_layers, ">= 1")
        check(
            self.pos_groups >= 1 and model.dim % self.pos_groups == 0,
            f"{p}.pos_groups",
            self.pos_groups,
            f"a divisor of model.dim={model.dim}",
        )
        check(self.crop_seconds >= 0.5, f"{p}.crop_seconds", self.crop_seconds, ">= 0.5")
        self.validate_common(p, model)
        # a span as long as the crop leaves nothing unmasked to predict from (or cannot be placed)
        frames = int(self.crop_seconds * self.frame_rate())
        for method in ("v1", "v2"):
            mask = getattr(self, method).mask
            check(
                mask.length < frames,
                f"{p}.{method}.mask.length",
                mask.length,
                f"< {frames} frames (crop_seconds={self.crop_seconds:g})",
            )

    def frame_rate(self) -> float:
        """Encoder frames per second of audio."""
        if self.frontend == "fbank":
            return 100 / self.fbank_stack  # 10 ms hop
        stride = 1
        for s in self.conv_strides:
            stride *= s
        return 16000 / stride


# --- text ---------------------------------------------------------------------------------


@dataclass
class TextV1Config(MethodConfig):
    mask: TokenMaskConfig = field(default_factory=TokenMaskConfig)

    def validate(self, p: str, model: ModelConfig) -> None:
        super().validate(p, model)
        self.mask.validate(f"{p}.mask")


@dataclass
class TextV2Config(V2Config):
    mask: FixedTokenMaskConfig = field(default_factory=FixedTokenMaskConfig)

    def validate(self, p: str, model: ModelConfig) -> None:
        super().validate(p, model)
        self.mask.validate(f"{p}.mask")


def _text_v1() -> TextV1Config:
    return TextV1Config(
        ema=EmaConfig(0.999, 0.99972, 800),
        targets=TargetConfig(None, Norm.layer, Norm.none, Sublayer.ffn),
        loss=LossConfig(beta=4.0),
        optim=OptimConfig(steps=800, batch_size=64, lr=0.001, warmup_steps=80, weight_decay=0.01),
    )


def _text_v2() -> TextV2Config:
    return TextV2Config(
        ema=EmaConfig(0.999, 0.99972, 800),
        targets=TargetConfig(None, Norm.instance, Norm.none, Sublayer.ffn),
        loss=LossConfig(beta=0.0, scale_by_dim=False),  # data2vec 2.0 text: loss_scale 1
        optim=OptimConfig(steps=800, batch_size=64, lr=0.001, warmup_steps=80, weight_decay=0.01),
        clone_batch=8,
        decoder=DecoderConfig(
            dim=64,
            layers=5,
            kernel=9,
            groups=1,
            residual=False,
            projection_layers=2,
            input_dropout=0.1,
        ),
    )


def _text_shared() -> list[str]:
    # the teacher reuses the student's embeddings and positions (paper: shared, not EMA)
    return ["frontend.embed", "frontend.pos", "frontend.norm"]


@dataclass
class TextPretrainConfig(PretrainCommon):
    v1: TextV1Config = field(default_factory=_text_v1)
    v2: TextV2Config = field(default_factory=_text_v2)
    shared: list[str] = field(default_factory=_text_shared)

    def validate(self, p: str, model: ModelConfig) -> None:
        self.validate_common(p, model)


@dataclass
class PretrainConfig:
    vision: VisionPretrainConfig = field(default_factory=VisionPretrainConfig)
    speech: SpeechPretrainConfig = field(default_factory=SpeechPretrainConfig)
    text: TextPretrainConfig = field(default_factory=TextPretrainConfig)

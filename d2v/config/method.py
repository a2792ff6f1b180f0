"""The method's settings: EMA teacher, targets, loss, optimizer, collapse monitor, and the two
methods a modality can pretrain with: data2vec (`v1`) and data2vec 2.0 (`v2`, which adds M masked
copies per sample and a light convolutional decoder)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace

from d2v.config.base import Norm, Sublayer, check, check_budget
from d2v.config.runtime import ModelConfig


class Method(str, enum.Enum):
    v1 = "v1"  # data2vec (ICML 2022): the student encodes the whole masked input
    v2 = "v2"  # data2vec 2.0 (ICML 2023): visible tokens only, M masks per sample, conv decoder


@dataclass
class EmaConfig:
    tau_start: float = 0.999
    tau_end: float = 0.9999
    anneal_steps: int = 1000  # linear from tau_start to tau_end, constant after

    def validate(self, p: str) -> None:
        check(0 < self.tau_start <= 1, f"{p}.tau_start", self.tau_start, "(0, 1]")
        check(0 < self.tau_end <= 1, f"{p}.tau_end", self.tau_end, "(0, 1]")
        check(self.anneal_steps >= 0, f"{p}.anneal_steps", self.anneal_steps, ">= 0")

    def within(self, steps: int) -> EmaConfig:
        """The schedule fitted to a run of `steps` updates: an anneal longer than the run, whose
        tau would stop short of tau_end, is shortened to the run (adapted rather than refused:
        a budget override such as `optim.steps=200` should not need a second one; the caller
        logs it)."""
        return replace(self, anneal_steps=min(self.anneal_steps, steps))


@dataclass
class TargetConfig:
    top_k: int | None = None  # None: the paper's K for the modality, scaled to the model depth
    norm: Norm = Norm.layer  # per-layer normalization before averaging
    final_norm: Norm = Norm.none  # normalization of the average
    sublayer: Sublayer = Sublayer.ffn

    def validate(self, p: str, depth: int) -> None:
        if self.top_k is not None:
            check(1 <= self.top_k <= depth, f"{p}.top_k", self.top_k, f"[1, depth={depth}]")


@dataclass
class LossConfig:
    beta: float = 2.0  # smooth L1 transition point; 0 = L2
    scale_by_dim: bool = True  # divide the per-token sum by sqrt(D) (fairseq data2vec)

    def validate(self, p: str) -> None:
        check(self.beta >= 0, f"{p}.beta", self.beta, ">= 0")


@dataclass
class CollapseConfig:
    """Stop a run whose targets stop varying: collapse shows first as falling target std."""

    min_target_std: float = 0.01
    check_after: int = 100  # steps before the check starts (targets start near-constant)
    patience: int = 3  # consecutive logged checks under the threshold

    def validate(self, p: str) -> None:
        check(self.min_target_std >= 0, f"{p}.min_target_std", self.min_target_std, ">= 0")
        check(self.patience >= 1, f"{p}.patience", self.patience, ">= 1")


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
        check_budget(self, p)
        check(0 <= self.min_lr_ratio <= 1, f"{p}.min_lr_ratio", self.min_lr_ratio, "[0, 1]")
        check(0 <= self.beta1 < 1, f"{p}.beta1", self.beta1, "[0, 1)")
        check(0 <= self.beta2 < 1, f"{p}.beta2", self.beta2, "[0, 1)")
        check(self.grad_clip >= 0, f"{p}.grad_clip", self.grad_clip, ">= 0")


@dataclass
class DecoderConfig:
    """data2vec 2.0's decoder: `layers` blocks of conv -> LayerNorm (no affine) -> GELU over the
    restored sequence (1-D for audio / text, 2-D over the patch grid for images), then a linear
    projection to the encoder width. Paper Base: image 768 d / 6 layers / kernel 3 / 16 groups;
    audio 384 / 4 / 7 / 16; text 768 / 5 / 9 / 1 with a 2-layer projection and no residual."""

    dim: int = 64
    layers: int = 4
    kernel: int = 3
    groups: int = 16  # must divide both `dim` and the encoder width
    residual: bool = True  # add each block's input when the widths match
    projection_layers: int = 1  # 2: Linear(dim, 2 dim) -> GELU -> Linear (data2vec 2.0 text)
    input_dropout: float = 0.0  # on the student's outputs before the decoder (audio / text 0.1)
    noise_std: float = 0.01  # masked slots enter the decoder as N(0, noise_std) noise

    def validate(self, p: str, model: ModelConfig) -> None:
        check(self.dim >= 1, f"{p}.dim", self.dim, ">= 1")
        check(self.layers >= 1, f"{p}.layers", self.layers, ">= 1")
        check(self.kernel >= 1, f"{p}.kernel", self.kernel, ">= 1")
        check(
            self.groups >= 1 and self.dim % self.groups == 0 and model.dim % self.groups == 0,
            f"{p}.groups",
            self.groups,
            f"a common divisor of decoder dim={self.dim} and model.dim={model.dim}",
        )
        check(
            self.projection_layers in (1, 2),
            f"{p}.projection_layers",
            self.projection_layers,
            "1 or 2",
        )
        check(0 <= self.input_dropout < 1, f"{p}.input_dropout", self.input_dropout, "[0, 1)")
        check(self.noise_std >= 0, f"{p}.noise_std", self.noise_std, ">= 0")


@dataclass
class MethodConfig:
    """What both methods set per modality (`pretrain.<modality>.v1` / `.v2`)."""

    ema: EmaConfig = field(default_factory=EmaConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self, p: str, model: ModelConfig) -> None:
        self.ema.validate(f"{p}.ema")
        self.targets.validate(f"{p}.targets", model.depth)
        self.loss.validate(f"{p}.loss")
        self.optim.validate(f"{p}.optim")


@dataclass
class V2Config(MethodConfig):
    """data2vec 2.0 adds M masked copies of each sample and the decoder."""

    clone_batch: int = 8  # M: masked copies per sample; the teacher runs once per sample
    decoder: DecoderConfig = field(default_factory=DecoderConfig)

    def validate(self, p: str, model: ModelConfig) -> None:
        super().validate(p, model)
        check(1 <= self.clone_batch <= 64, f"{p}.clone_batch", self.clone_batch, "[1, 64]")
        self.decoder.validate(f"{p}.decoder", model)

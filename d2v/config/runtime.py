"""The model size, the DeepSpeed engine and the MLflow store: what every stage runs with."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from d2v.config.base import Precision, check


class Arch(str, enum.Enum):
    """The encoder's architecture family (d2v.architecture has what each one sets)."""

    generic = "generic"  # one pre-norm Transformer for every modality (ViT / data2vec 2.0)
    paper = "paper"  # the paper's per modality: BEiT, wav2vec 2.0, RoBERTa (HF's Data2Vec*)


@dataclass
class ModelConfig:
    name: str = "micro"
    dim: int = 64
    depth: int = 4
    heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    arch: Arch = Arch.paper  # HF's Data2Vec architectures (d2v export); or Arch.generic
    norm_eps: float = 1e-5  # every layer norm's epsilon (torch's and fairseq's default)

    def validate(self, p: str) -> None:
        check(self.dim >= 8, f"{p}.dim", self.dim, ">= 8")
        check(self.depth >= 1, f"{p}.depth", self.depth, ">= 1")
        check(self.heads >= 1, f"{p}.heads", self.heads, ">= 1")
        check(self.dim % self.heads == 0, f"{p}.dim", self.dim, f"a multiple of heads={self.heads}")
        check(self.mlp_ratio > 0, f"{p}.mlp_ratio", self.mlp_ratio, "> 0")
        check(0 <= self.dropout < 1, f"{p}.dropout", self.dropout, "[0, 1)")
        check(0 < self.norm_eps < 1, f"{p}.norm_eps", self.norm_eps, "(0, 1)")


@dataclass
class DeepSpeedConfig:
    zero_stage: int = 2
    precision: Precision = Precision.auto
    num_procs: int = 1  # > 1: the stage relaunches itself under torchrun with this many ranks
    # a user's DeepSpeed JSON merged under the keys d2v owns (d2v/config/deepspeed_json.py)
    config_file: str | None = None

    def validate(self, p: str) -> None:
        from d2v.config.deepspeed_json import read_user_config

        check(
            self.zero_stage in (0, 1, 2, 3), f"{p}.zero_stage", self.zero_stage, "one of 0, 1, 2, 3"
        )
        check(self.num_procs >= 1, f"{p}.num_procs", self.num_procs, ">= 1")
        if self.config_file is not None:  # missing, invalid or unusable: refused before compute
            read_user_config(self.config_file, f"{p}.config_file")


@dataclass
class TrackingConfig:
    uri: str = "sqlite:///mlruns.db"  # MLFLOW_TRACKING_URI overrides
    experiment: str = "d2v"

    def validate(self, p: str) -> None:
        check(bool(self.experiment), f"{p}.experiment", self.experiment, "a non-empty name")

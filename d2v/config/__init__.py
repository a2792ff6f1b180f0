"""Typed configs for every params section, built from the composed `params.yaml` and validated
before any compute. Errors name the param (dotted path) and its allowed range.

A small torch-free package, one module per noun; everything is importable from `d2v.config`.

One source of defaults: `Params()` built from the dataclass defaults equals the composed conf/
(params.yaml) outside the keyed maps (tests/test_config.py checks it). In the keyed maps
(`finetune.<task>`, `sweep.<modality>` and its `space`, `ablate.<modality>`) the yaml is the
source: a field every entry gives has no default and the loader requires it; a defaulted field is
optional per entry. The building blocks (`EmaConfig`, `OptimConfig`, the mask configs, ...) default
to generic or paper values; each modality's pretraining config sets its own.
"""

from d2v.config.ablate import AblateConfig, Design
from d2v.config.base import ConfigError, Modality, Norm, Precision, Sublayer
from d2v.config.bench import BenchConfig
from d2v.config.data import DataConfig, SpeechDataConfig, TextDataConfig, VisionDataConfig
from d2v.config.downstream import INITS, FinetuneOptim, ProbeConfig, TaskConfig
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
from d2v.config.params import Params, from_dict, load_params, to_dict
from d2v.config.pretrain import (
    PretrainConfig,
    SpeechPretrainConfig,
    TextPretrainConfig,
    VisionPretrainConfig,
)
from d2v.config.runtime import Arch, DeepSpeedConfig, ModelConfig, TrackingConfig
from d2v.config.sweep import SweepConfig, SweepDim

__all__ = [
    "INITS",
    "AblateConfig",
    "Arch",
    "BenchConfig",
    "BlockMaskConfig",
    "CollapseConfig",
    "ConfigError",
    "DataConfig",
    "DecoderConfig",
    "DeepSpeedConfig",
    "Design",
    "EmaConfig",
    "FinetuneOptim",
    "FixedTokenMaskConfig",
    "InverseBlockMaskConfig",
    "LossConfig",
    "Method",
    "MethodConfig",
    "Modality",
    "ModelConfig",
    "Norm",
    "OptimConfig",
    "Params",
    "Precision",
    "PretrainConfig",
    "ProbeConfig",
    "SpanMaskConfig",
    "SpeechDataConfig",
    "SpeechPretrainConfig",
    "Sublayer",
    "SweepConfig",
    "SweepDim",
    "TargetConfig",
    "TaskConfig",
    "TextDataConfig",
    "TextPretrainConfig",
    "TokenMaskConfig",
    "TrackingConfig",
    "V2Config",
    "VisionDataConfig",
    "VisionPretrainConfig",
    "from_dict",
    "load_params",
    "to_dict",
]

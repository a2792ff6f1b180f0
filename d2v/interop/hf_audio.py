"""data2vec speech = wav2vec 2.0's encoder with data2vec's conv positions: d2v's speech encoder
with `model.arch: paper` and the waveform front end <-> HF transformers' `Data2VecAudioModel`,
weight by weight, config field by field.

d2v derives padding from the waveforms' lengths (`Audio.lengths`); HF needs
`attention_mask = samples < length` passed. The log-mel front end (`frontend: fbank`) has no HF
counterpart: export refuses it by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from d2v.config import ModelConfig, SpeechPretrainConfig, from_dict
from d2v.encoder import Encoder
from d2v.interop.hf_files import paper_model, read_config, read_state, require_supported
from d2v.interop.mapping import InteropError, invert, load_converted, require_paper_arch

MODEL_TYPE = "data2vec-audio"
PREFIX = "data2vec_audio"
IGNORE = (
    "lm_head.",
    "projector.",
    "classifier.",
    "tdnn.",
    "feature_extractor_xvector.",
    "objective.",
)
OPTIONAL = ("frontend.mask_emb",)  # HF's masked_spec_embed exists only with mask_time_prob > 0

FRONTEND = [  # (HF, d2v)
    ("masked_spec_embed", "frontend.mask_emb"),
    ("feature_projection.layer_norm.weight", "frontend.feature_norm.weight"),
    ("feature_projection.layer_norm.bias", "frontend.feature_norm.bias"),
    ("feature_projection.projection.weight", "frontend.proj.weight"),
    ("feature_projection.projection.bias", "frontend.proj.bias"),
    ("encoder.layer_norm.weight", "frontend.norm.weight"),  # after the positions, before blocks
    ("encoder.layer_norm.bias", "frontend.norm.bias"),
]
CONV = [  # per feature-extractor layer
    ("conv.weight", "conv.weight"),  # the paper's convolutions have no bias
    ("layer_norm.weight", "norm.weight"),
    ("layer_norm.bias", "norm.bias"),
]
BLOCK = [  # per block, (HF module, d2v module), each with a weight and a bias
    ("attention.q_proj", "attn.q"),
    ("attention.k_proj", "attn.k"),
    ("attention.v_proj", "attn.v"),
    ("attention.out_proj", "attn.proj"),
    ("layer_norm", "norm1"),  # post-norm after attention
    ("feed_forward.intermediate_dense", "mlp.fc1"),
    ("feed_forward.output_dense", "mlp.fc2"),
    ("final_layer_norm", "norm2"),  # post-norm after the FFN
]


@dataclass
class AudioShape:
    """What a speech encoder needs beside ModelConfig: the waveform CNN and the positions."""

    conv_channels: int
    conv_kernels: list[int] = field(default_factory=list)
    conv_strides: list[int] = field(default_factory=list)
    pos_kernel: int = 19
    pos_groups: int = 16
    pos_layers: int = 5

    def overrides(self) -> list[str]:
        """The params the pipeline needs for this encoder (beside model.*)."""
        p = "pretrain.speech"
        return [
            f"{p}.frontend=waveform",
            f"{p}.conv_channels={self.conv_channels}",
            f"{p}.conv_kernels=[{','.join(map(str, self.conv_kernels))}]",
            f"{p}.conv_strides=[{','.join(map(str, self.conv_strides))}]",
            f"{p}.pos_kernel={self.pos_kernel}",
            f"{p}.pos_groups={self.pos_groups}",
            f"{p}.pos_layers={self.pos_layers}",
        ]

    def pretrain_config(self) -> SpeechPretrainConfig:
        return SpeechPretrainConfig(
            frontend="waveform",
            conv_channels=self.conv_channels,
            conv_kernels=list(self.conv_kernels),
            conv_strides=list(self.conv_strides),
            pos_kernel=self.pos_kernel,
            pos_groups=self.pos_groups,
            pos_layers=self.pos_layers,
        )


def pairs(depth: int, shape: AudioShape) -> list[tuple[str, str]]:
    """Every (HF name, d2v name) of a `depth`-block encoder."""
    out = list(FRONTEND)
    for i in range(len(shape.conv_kernels)):
        h, d = f"feature_extractor.conv_layers.{i}.", f"frontend.features.layers.{i}."
        out += [(h + a, d + b) for a, b in CONV]
    for i in range(shape.pos_layers):
        h, d = f"encoder.pos_conv_embed.layers.{i}.conv.", f"frontend.pos_conv.layers.{i}.conv."
        out += [(h + p, d + p) for p in ("weight", "bias")]
    for i in range(depth):
        for hf, d2v in BLOCK:
            for p in ("weight", "bias"):
                out.append((f"encoder.layers.{i}.{hf}.{p}", f"backbone.blocks.{i}.{d2v}.{p}"))
    return out


def hf_config(model: ModelConfig, shape: AudioShape):
    from transformers import Data2VecAudioConfig

    n = len(shape.conv_kernels)
    return Data2VecAudioConfig(
        hidden_size=model.dim,
        num_hidden_layers=model.depth,
        num_attention_heads=model.heads,
        intermediate_size=int(model.dim * model.mlp_ratio),
        hidden_act="gelu",
        hidden_dropout=model.dropout,
        activation_dropout=model.dropout,
        attention_dropout=model.dropout,
        layerdrop=0.0,  # d2v has no layer drop
        layer_norm_eps=model.norm_eps,
        feat_extract_activation="gelu",
        conv_dim=[shape.conv_channels] * n,
        conv_kernel=list(shape.conv_kernels),
        conv_stride=list(shape.conv_strides),
        conv_bias=False,
        conv_pos_kernel_size=shape.pos_kernel,
        num_conv_pos_embedding_groups=shape.pos_groups,
        num_conv_pos_embeddings=shape.pos_layers,
        mask_time_prob=0.05,  # > 0: HF then holds d2v's mask embedding (masked_spec_embed)
    )


def d2v_config(cfg, name: str = "hf") -> tuple[ModelConfig, AudioShape]:
    """HF Data2VecAudioConfig -> d2v's; fields d2v cannot represent are refused by name."""
    require_supported(
        cfg,
        (
            ("hidden_act", cfg.hidden_act == "gelu"),
            ("feat_extract_activation", cfg.feat_extract_activation == "gelu"),
            ("conv_bias", not cfg.conv_bias),
            ("conv_dim", len(set(cfg.conv_dim)) == 1),  # d2v: one width for every conv layer
            ("add_adapter", not cfg.add_adapter),
        ),
    )
    model = paper_model(cfg, name, cfg.hidden_dropout)
    shape = AudioShape(
        conv_channels=cfg.conv_dim[0],
        conv_kernels=list(cfg.conv_kernel),
        conv_strides=list(cfg.conv_stride),
        pos_kernel=cfg.conv_pos_kernel_size,
        pos_groups=cfg.num_conv_pos_embedding_groups,
        pos_layers=cfg.num_conv_pos_embeddings,
    )
    return model, shape


def build(model: ModelConfig, shape: AudioShape) -> Encoder:
    from d2v.modalities.speech import build_encoder

    return build_encoder(model, shape.pretrain_config())


def shape_of(encoder: Encoder) -> AudioShape:
    fe = encoder.frontend
    if not hasattr(fe.features, "kernels"):
        raise InteropError(
            "pretrain.speech.frontend = 'fbank' (log-mel filterbanks) has no HF Data2VecAudio "
            "counterpart: export needs the waveform front end (frontend: waveform)"
        )
    if not hasattr(fe.pos_conv, "layers"):
        raise InteropError("the speech encoder is the generic one: export needs model.arch: paper")
    first = fe.pos_conv.layers[0].conv
    return AudioShape(
        conv_channels=fe.features.out_dim,
        conv_kernels=list(fe.features.kernels),
        conv_strides=list(fe.features.strides),
        pos_kernel=first.kernel_size[0],
        pos_groups=first.groups,
        pos_layers=len(fe.pos_conv.layers),
    )


def to_hf(encoder: Encoder, model: ModelConfig):
    """d2v's speech encoder -> an HF Data2VecAudioModel with the same weights."""
    from transformers import Data2VecAudioModel

    shape = shape_of(encoder)
    hf = Data2VecAudioModel(hf_config(model, shape))
    src = encoder.state_dict()
    return load_converted(hf, src, invert(pairs(model.depth, shape)), "d2v", "HF")


def from_hf_dir(
    hf_dir: Path, into: Encoder | None = None
) -> tuple[Encoder, ModelConfig, AudioShape]:
    """An HF Data2VecAudio directory -> d2v's encoder with its weights (built from its config,
    or `into`, whose shapes must then match tensor for tensor)."""
    model, shape = d2v_config(read_config(hf_dir, MODEL_TYPE))
    encoder = into if into is not None else build(model, shape)
    src = read_state(hf_dir, PREFIX)
    load_converted(encoder, src, pairs(model.depth, shape), "HF", "d2v", IGNORE, OPTIONAL)
    return encoder, model, shape


def rebuild(config: dict, state: dict, prepared: Path) -> tuple[Encoder, ModelConfig]:
    """The encoder a speech pretraining run saved (its config and state), for export."""
    from d2v.modalities.speech import build_encoder

    model = from_dict(ModelConfig, config["model"], "model", complete=False)
    cfg = from_dict(
        SpeechPretrainConfig, config["pretrain"]["speech"], "pretrain.speech", complete=False
    )
    if cfg.frontend != "waveform":
        raise InteropError(
            f"pretrain.speech.frontend = {cfg.frontend!r} (log-mel filterbanks) has no HF "
            "Data2VecAudio counterpart: export needs the waveform front end (frontend: waveform)"
        )
    require_paper_arch(model.arch.value, "wav2vec 2.0 / data2vec audio")
    encoder = build_encoder(model, cfg)
    encoder.load_state_dict(state, strict=True)
    return encoder.eval(), model

"""data2vec vision = BEiT: d2v's vision encoder with `model.arch: paper` <-> HF transformers'
`Data2VecVisionModel`, weight by weight, config field by field.

HF's `last_hidden_state` is (B, 1 + T, D), CLS first; d2v's encoder returns the CLS token's
output apart (`EncoderOutput.cls`) and the patches' as `last`. With mean pooling (HF's
`use_mean_pooling`, the fine-tuned checkpoints) neither applies a final layer norm; the pooled
features' layer norm is the head's (d2v's classifier `fc_norm`, HF's pooler): import leaves HF's
pooler out. Without it (the pretrained checkpoints) HF's `layernorm` on the sequence is d2v's
final norm (`pretrain.vision.final_norm: true`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from d2v.config import ModelConfig, VisionPretrainConfig, from_dict
from d2v.encoder import Encoder
from d2v.interop.hf_files import paper_model, read_config, read_state, require_supported
from d2v.interop.mapping import InteropError, invert, load_converted, require_paper_arch

MODEL_TYPE = "data2vec-vision"
PREFIX = "data2vec_vision"
IGNORE = (  # HF heads d2v's encoder has not, and index buffers older checkpoints saved
    "pooler.",
    "classifier.",
    "lm_head.",
    "decode_head.",
    "auxiliary_head.",
    "fpn",
    "relative_position_index",
)
OPTIONAL = ("frontend.mask_emb",)  # HF's mask token exists only with use_mask_token

EMBEDDINGS = [  # (HF, d2v)
    ("embeddings.cls_token", "frontend.cls"),
    ("embeddings.mask_token", "frontend.mask_emb"),
    ("embeddings.position_embeddings", "frontend.pos"),
    ("embeddings.patch_embeddings.projection.weight", "frontend.patch_embed.weight"),
    ("embeddings.patch_embeddings.projection.bias", "frontend.patch_embed.bias"),
]
BLOCK = [  # per block (HF name, d2v name)
    ("attention.attention.query.weight", "attn.q.weight"),
    ("attention.attention.query.bias", "attn.q.bias"),
    ("attention.attention.key.weight", "attn.k.weight"),  # BEiT: no key bias
    ("attention.attention.value.weight", "attn.v.weight"),
    ("attention.attention.value.bias", "attn.v.bias"),
    ("attention.output.dense.weight", "attn.proj.weight"),
    ("attention.output.dense.bias", "attn.proj.bias"),
    ("layernorm_before.weight", "norm1.weight"),  # pre-norm before attention
    ("layernorm_before.bias", "norm1.bias"),
    ("layernorm_after.weight", "norm2.weight"),  # pre-norm before the FFN
    ("layernorm_after.bias", "norm2.bias"),
    ("intermediate.dense.weight", "mlp.fc1.weight"),
    ("intermediate.dense.bias", "mlp.fc1.bias"),
    ("output.dense.weight", "mlp.fc2.weight"),
    ("output.dense.bias", "mlp.fc2.bias"),
    ("lambda_1", "scale1"),  # layer scale of the attention branch
    ("lambda_2", "scale2"),  # and of the FFN branch
]
LAYER_REL_POS = (
    "attention.attention.relative_position_bias.relative_position_bias_table",
    "attn.rel_pos.table",
)
SHARED_REL_POS = (
    "encoder.relative_position_bias.relative_position_bias_table",
    "backbone.rel_pos.table",
)


@dataclass
class VisionShape:
    """What a vision encoder needs beside ModelConfig."""

    image_size: int
    patch_size: int
    channels: int
    pos: str  # sincos | learned | relative | shared_relative
    final_norm: bool = False  # HF: use_mean_pooling false

    def overrides(self) -> list[str]:
        """The params the pipeline needs for this encoder (beside model.*)."""
        return [
            f"data.vision.image_size={self.image_size}",
            f"data.vision.channels={self.channels}",
            f"pretrain.vision.patch_size={self.patch_size}",
            f"pretrain.vision.pos={self.pos}",
            f"pretrain.vision.final_norm={str(self.final_norm).lower()}",
        ]


def pairs(depth: int, shape: VisionShape) -> list[tuple[str, str]]:
    """Every (HF name, d2v name) of a `depth`-block encoder with these positions."""
    absolute = shape.pos in ("sincos", "learned")
    out = [p for p in EMBEDDINGS if absolute or p[1] != "frontend.pos"]
    if shape.pos == "shared_relative":
        out.append(SHARED_REL_POS)
    if shape.final_norm:  # HF's `layernorm` on the sequence output (use_mean_pooling false)
        out += [
            ("layernorm.weight", "backbone.norm.weight"),
            ("layernorm.bias", "backbone.norm.bias"),
        ]
    for i in range(depth):
        block = BLOCK + ([LAYER_REL_POS] if shape.pos == "relative" else [])
        out += [(f"encoder.layer.{i}.{h}", f"backbone.blocks.{i}.{d}") for h, d in block]
    return out


def hf_config(model: ModelConfig, shape: VisionShape):
    from transformers import Data2VecVisionConfig

    return Data2VecVisionConfig(
        hidden_size=model.dim,
        num_hidden_layers=model.depth,
        num_attention_heads=model.heads,
        intermediate_size=int(model.dim * model.mlp_ratio),
        hidden_act="gelu",
        hidden_dropout_prob=model.dropout,
        attention_probs_dropout_prob=model.dropout,
        layer_norm_eps=model.norm_eps,
        image_size=shape.image_size,
        patch_size=shape.patch_size,
        num_channels=shape.channels,
        use_mask_token=True,  # d2v's mask embedding
        use_absolute_position_embeddings=shape.pos in ("sincos", "learned"),
        use_relative_position_bias=shape.pos == "relative",
        use_shared_relative_position_bias=shape.pos == "shared_relative",
        layer_scale_init_value=0.1,  # any > 0: the scales themselves are weights
        drop_path_rate=0.0,  # d2v has no stochastic depth
        use_mean_pooling=not shape.final_norm,
    )


def d2v_config(cfg, name: str = "hf") -> tuple[ModelConfig, VisionShape]:
    """HF Data2VecVisionConfig -> d2v's; fields d2v cannot represent are refused by name."""
    absolute = cfg.use_absolute_position_embeddings
    relative = cfg.use_relative_position_bias or cfg.use_shared_relative_position_bias
    require_supported(
        cfg,
        (
            ("hidden_act", cfg.hidden_act == "gelu"),
            ("layer_scale_init_value", cfg.layer_scale_init_value > 0),
            ("use_absolute_position_embeddings", absolute != relative),
            (
                "use_shared_relative_position_bias",
                not (cfg.use_relative_position_bias and cfg.use_shared_relative_position_bias),
            ),
            ("image_size", isinstance(cfg.image_size, int)),
            ("patch_size", isinstance(cfg.patch_size, int)),
        ),
    )
    pos = (
        "learned"
        if absolute
        else "relative"
        if cfg.use_relative_position_bias
        else "shared_relative"
    )
    model = paper_model(cfg, name, cfg.hidden_dropout_prob)
    shape = VisionShape(cfg.image_size, cfg.patch_size, cfg.num_channels, pos)
    shape.final_norm = not cfg.use_mean_pooling
    return model, shape


def build(model: ModelConfig, shape: VisionShape) -> Encoder:
    from d2v.modalities.vision import build_encoder

    cfg = VisionPretrainConfig(
        patch_size=shape.patch_size, pos=shape.pos, final_norm=shape.final_norm
    )
    return build_encoder(model, cfg, shape.image_size, shape.channels)


def shape_of(encoder: Encoder) -> VisionShape:
    fe = encoder.frontend
    if not hasattr(fe, "cls"):
        raise InteropError("the vision encoder is the generic one: export needs model.arch: paper")
    conv = fe.patch_embed
    backbone = encoder.backbone
    if isinstance(fe.pos, torch.nn.Parameter):
        pos = "learned"
    elif fe.pos is not None:
        pos = "sincos"
    else:
        pos = "shared_relative" if backbone.rel_pos is not None else "relative"
    final_norm = isinstance(backbone.norm, torch.nn.LayerNorm)
    return VisionShape(
        fe.grid[0] * conv.stride[0], conv.stride[0], conv.in_channels, pos, final_norm
    )


def to_hf(encoder: Encoder, model: ModelConfig):
    """d2v's vision encoder -> an HF Data2VecVisionModel with the same weights (fixed sincos
    positions become HF's absolute position embeddings, with their values)."""
    from transformers import Data2VecVisionModel

    shape = shape_of(encoder)
    hf = Data2VecVisionModel(hf_config(model, shape))
    state = encoder.state_dict()
    if shape.pos == "sincos":
        state["frontend.pos"] = encoder.frontend.pos
    return load_converted(hf, state, invert(pairs(model.depth, shape)), "d2v", "HF")


def from_hf_dir(
    hf_dir: Path, into: Encoder | None = None
) -> tuple[Encoder, ModelConfig, VisionShape]:
    """An HF Data2VecVision directory -> d2v's encoder with its weights (built from its config,
    or `into`, whose shapes must then match tensor for tensor)."""
    model, shape = d2v_config(read_config(hf_dir, MODEL_TYPE))
    encoder = into if into is not None else build(model, shape)
    src = read_state(hf_dir, PREFIX)
    load_converted(encoder, src, pairs(model.depth, shape), "HF", "d2v", IGNORE, OPTIONAL)
    return encoder, model, shape


def rebuild(config: dict, state: dict, prepared: Path) -> tuple[Encoder, ModelConfig]:
    """The encoder a vision pretraining run saved (its config and state), for export."""
    model = from_dict(ModelConfig, config["model"], "model", complete=False)
    require_paper_arch(model.arch.value, "BEiT")
    cfg = from_dict(
        VisionPretrainConfig, config["pretrain"]["vision"], "pretrain.vision", complete=False
    )
    image_size = int(config["data"]["vision"]["image_size"])
    channels = state["frontend.patch_embed.weight"].shape[1]
    shape = VisionShape(image_size, cfg.patch_size, channels, cfg.pos, cfg.final_norm)
    encoder = build(model, shape)
    encoder.load_state_dict(state, strict=True)
    return encoder.eval(), model

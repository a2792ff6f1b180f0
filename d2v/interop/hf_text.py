"""data2vec text = RoBERTa: d2v's text encoder with `model.arch: paper` <-> HF transformers'
`Data2VecTextModel`, weight by weight, config field by field.

d2v derives padding from the ids (`pad_id`); HF needs `attention_mask = ids != pad_id` passed
(it derives only the positions from the ids). HF's pooler (dense + tanh on `<s>`) is no part of
d2v's encoder: import leaves it out; export writes HF's randomly initialized one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from d2v.config import ModelConfig
from d2v.data.errors import readable
from d2v.encoder import Encoder
from d2v.interop.hf_files import paper_model, read_config, read_state, require_supported
from d2v.interop.mapping import InteropError, invert, load_converted, require_paper_arch

MODEL_TYPE = "data2vec-text"
PREFIX = "data2vec_text"  # the base model's name inside HF's task models
IGNORE = (
    "pooler.",
    "lm_head.",
    "classifier.",
    "embeddings.position_ids",
    "embeddings.token_type_ids",
)

EMBEDDINGS = [  # (HF, d2v)
    ("embeddings.word_embeddings.weight", "frontend.embed.weight"),
    ("embeddings.position_embeddings.weight", "frontend.pos.weight"),
    ("embeddings.token_type_embeddings.weight", "frontend.token_type.weight"),
    ("embeddings.LayerNorm.weight", "frontend.norm.weight"),
    ("embeddings.LayerNorm.bias", "frontend.norm.bias"),
]
BLOCK = [  # per block, (HF module, d2v module), each with a weight and a bias
    ("attention.self.query", "attn.q"),
    ("attention.self.key", "attn.k"),
    ("attention.self.value", "attn.v"),
    ("attention.output.dense", "attn.proj"),
    ("attention.output.LayerNorm", "norm1"),  # post-norm after attention
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
    ("output.LayerNorm", "norm2"),  # post-norm after the FFN
]


def pairs(depth: int) -> list[tuple[str, str]]:
    """Every (HF name, d2v name) of a `depth`-block encoder."""
    out = list(EMBEDDINGS)
    for i in range(depth):
        for hf, d2v in BLOCK:
            for p in ("weight", "bias"):
                out.append((f"encoder.layer.{i}.{hf}.{p}", f"backbone.blocks.{i}.{d2v}.{p}"))
    return out


@dataclass
class TextShape:
    """What a text encoder needs beside ModelConfig: its vocabulary and positions."""

    vocab_size: int
    max_len: int  # tokens per sequence
    pad_id: int
    type_vocab: int = 1

    def overrides(self) -> list[str]:
        """The params the pipeline needs for this encoder (beside model.*); the vocabulary must
        also be the checkpoint's tokenizer's."""
        return [f"data.text.vocab_size={self.vocab_size}", f"data.text.max_seq_len={self.max_len}"]


def hf_config(model: ModelConfig, shape: TextShape, bos_id: int = 0, eos_id: int = 2):
    from transformers import Data2VecTextConfig

    return Data2VecTextConfig(
        vocab_size=shape.vocab_size,
        hidden_size=model.dim,
        num_hidden_layers=model.depth,
        num_attention_heads=model.heads,
        intermediate_size=int(model.dim * model.mlp_ratio),
        hidden_act="gelu",
        hidden_dropout_prob=model.dropout,
        attention_probs_dropout_prob=model.dropout,
        max_position_embeddings=shape.max_len + shape.pad_id + 1,  # RoBERTa: past padding
        type_vocab_size=shape.type_vocab,
        layer_norm_eps=model.norm_eps,
        pad_token_id=shape.pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
    )


def d2v_config(cfg, name: str = "hf") -> tuple[ModelConfig, TextShape]:
    """HF Data2VecTextConfig -> d2v's; fields d2v cannot represent are refused by name."""
    require_supported(
        cfg,
        (
            ("hidden_act", cfg.hidden_act == "gelu"),
            ("is_decoder", not cfg.is_decoder),
            ("add_cross_attention", not cfg.add_cross_attention),
            ("pad_token_id", cfg.pad_token_id is not None),
        ),
    )
    model = paper_model(cfg, name, cfg.hidden_dropout_prob)
    shape = TextShape(
        vocab_size=cfg.vocab_size,
        max_len=cfg.max_position_embeddings - cfg.pad_token_id - 1,
        pad_id=cfg.pad_token_id,
        type_vocab=cfg.type_vocab_size,
    )
    return model, shape


def build(model: ModelConfig, shape: TextShape) -> Encoder:
    from d2v.modalities.text import build_encoder

    return build_encoder(model, shape.vocab_size, shape.max_len, shape.pad_id, shape.type_vocab)


def shape_of(encoder: Encoder) -> TextShape:
    fe = encoder.frontend
    if not hasattr(fe, "token_type"):
        raise InteropError("the text encoder is the generic one: export needs model.arch: paper")
    return TextShape(
        vocab_size=fe.embed.num_embeddings,
        max_len=fe.pos.num_embeddings - fe.pad_id - 1,
        pad_id=fe.pad_id,
        type_vocab=fe.token_type.num_embeddings,
    )


def to_hf(encoder: Encoder, model: ModelConfig, bos_id: int = 0, eos_id: int = 2):
    """d2v's text encoder -> an HF Data2VecTextModel with the same weights. Its pooler (dense +
    tanh on `<s>`, for HF's sentence heads) is no part of d2v's encoder: it keeps HF's random
    init, saved with the rest so that AutoModel loads the directory without a missing key (as
    the released data2vec checkpoints, whose pooler was never trained either)."""
    from transformers import Data2VecTextModel

    hf = Data2VecTextModel(hf_config(model, shape_of(encoder), bos_id, eos_id))
    src = encoder.state_dict()
    return load_converted(hf, src, invert(pairs(model.depth)), "d2v", "HF", keep=("pooler.",))


def from_hf_dir(
    hf_dir: Path, into: Encoder | None = None
) -> tuple[Encoder, ModelConfig, TextShape]:
    """An HF Data2VecText directory -> d2v's encoder with its weights (built from its config,
    or `into`, whose shapes must then match tensor for tensor)."""
    model, shape = d2v_config(read_config(hf_dir, MODEL_TYPE))
    encoder = into if into is not None else build(model, shape)
    load_converted(encoder, read_state(hf_dir, PREFIX), pairs(model.depth), "HF", "d2v", IGNORE)
    return encoder, model, shape


def rebuild(config: dict, state: dict, prepared: Path) -> tuple[Encoder, ModelConfig]:
    """The encoder a text pretraining run saved (its config and state), for export; the special
    ids come from the prepared data's meta (the BPE the encoder was trained on)."""
    import json

    from d2v.config import from_dict

    model = from_dict(ModelConfig, config["model"], "model", complete=False)
    require_paper_arch(model.arch.value, "RoBERTa")
    meta_path = prepared / "meta.json"
    if not meta_path.exists():
        raise InteropError(f"{meta_path}: missing (the special ids of the text encoder's BPE)")
    with readable(meta_path, "rerun prepare@text"):
        ids = json.loads(meta_path.read_text())["special_ids"]
    pad = int(ids["pad"])
    shape = TextShape(
        vocab_size=state["frontend.embed.weight"].shape[0],
        max_len=state["frontend.pos.weight"].shape[0] - pad - 1,
        pad_id=pad,
        type_vocab=state["frontend.token_type.weight"].shape[0],
    )
    encoder = build(model, shape)
    encoder.load_state_dict(state, strict=True)
    return encoder.eval(), model

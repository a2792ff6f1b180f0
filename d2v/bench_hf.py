"""HF transformers' Data2Vec models as the bench's peers: the same width, depth, heads, MLP width
and input as d2v's encoder, built from a config with random weights (nothing from a hub), timed
forward + backward interleaved with d2v's own.

`transformers` is a bench extra (`pip install -e '.[bench]'`), imported only here.

Dimensions: B batch, R mask rows, K visible tokens, D width.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from d2v.config import Modality, ModelConfig, Params
from d2v.modalities.audio import Audio


def _common(model: ModelConfig) -> dict[str, Any]:
    return {
        "hidden_size": model.dim,
        "num_hidden_layers": model.depth,
        "num_attention_heads": model.heads,
        "intermediate_size": int(model.dim * model.mlp_ratio),
        "hidden_act": "gelu",
    }


def hf_model(modality: Modality, params: Params, model: ModelConfig, seq_len: int) -> nn.Module:
    """The HF Data2Vec model of `modality` shaped like d2v's encoder at `model` size."""
    import transformers as tf

    if modality == Modality.vision:
        data, pre = params.data.vision, params.pretrain.vision
        cfg = tf.Data2VecVisionConfig(
            **_common(model),
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
            drop_path_rate=0.0,
            image_size=data.image_size,
            patch_size=pre.patch_size,
            num_channels=data.channels,
            use_absolute_position_embeddings=True,
            use_relative_position_bias=False,
            use_mean_pooling=True,
        )
        return tf.Data2VecVisionModel(cfg, add_pooling_layer=False)
    if modality == Modality.speech:
        pre = params.pretrain.speech
        cfg = tf.Data2VecAudioConfig(
            **_common(model),
            conv_dim=(pre.conv_channels,) * len(pre.conv_kernels),
            conv_kernel=tuple(pre.conv_kernels),
            conv_stride=tuple(pre.conv_strides),
            num_conv_pos_embedding_groups=pre.pos_groups,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            feat_proj_dropout=0.0,
            layerdrop=0.0,
            mask_time_prob=0.0,
        )
        return tf.Data2VecAudioModel(cfg)
    text = params.data.text
    cfg = tf.Data2VecTextConfig(
        **_common(model),
        vocab_size=text.vocab_size,
        max_position_embeddings=seq_len + 2,  # RoBERTa positions start past the padding id
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=1,
    )
    return tf.Data2VecTextModel(cfg, add_pooling_layer=False)


def hf_forward(modality: Modality, hf: nn.Module, source: Any, pad_id: int = 1) -> Tensor:
    """HF's last hidden state for d2v's input batch."""
    if modality == Modality.vision:
        return hf(pixel_values=source).last_hidden_state
    if modality == Modality.speech:
        assert isinstance(source, Audio)
        frames = torch.arange(source.wave.shape[1])[None] < source.lengths[:, None]
        return hf(input_values=source.wave, attention_mask=frames.long()).last_hidden_state
    return hf(input_ids=source, attention_mask=(source != pad_id).long()).last_hidden_state


@dataclass
class Race:
    ours_s: float  # median forward + backward of d2v's encoder
    hf_s: float  # median forward + backward of the HF peer
    repeats: int

    @property
    def speedup(self) -> float:
        """> 1: d2v's encoder is faster."""
        return self.hf_s / self.ours_s


def race(
    ours: Callable[[], Tensor], theirs: Callable[[], Tensor], warmup: int, repeats: int
) -> Race:
    """Forward + backward of both, interleaved run by run so that machine noise hits both."""

    def once(fn: Callable[[], Tensor]) -> float:
        t = time.perf_counter()
        fn().float().square().mean().backward()
        return time.perf_counter() - t

    for _ in range(warmup):
        once(ours)
        once(theirs)
    a, b = [], []
    for _ in range(repeats):
        a.append(once(ours))
        b.append(once(theirs))
    return Race(statistics.median(a), statistics.median(b), repeats)

"""What `model.arch` sets in a modality's Transformer: the generic pre-norm encoder d2v trains by
default, or the paper's per modality, the same as HF transformers' Data2Vec models (so that
`d2v export` / `d2v import` map weights one to one):

| | norm | q/k/v | key bias | layer scale | final norm |
|---|---|---|---|---|---|
| generic | pre | fused | yes | no | yes |
| text: RoBERTa (Data2VecTextModel) | post | separate | yes | no | no |
| speech: wav2vec 2.0 (Data2VecAudioModel) | post | separate | yes | no | no |
| vision: BEiT (Data2VecVisionModel) | pre | separate | no | 0.1 | no (the pooler's) |

Post-norm encoders (RoBERTa, wav2vec 2.0) end each block with a layer norm and have no final one
(wav2vec 2.0's layer norm comes before the blocks, in the frontend). BEiT with mean pooling
leaves the last block's output unnormalized; its pooler layer-norms the mean. BEiT also puts a
CLS token first (d2v.modalities.beit) and takes its positions from `pretrain.vision.pos`:
absolute (sincos, learned) or a relative position bias per block or shared by all
(`relative`, `shared_relative`; d2v.relpos).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from d2v.config import Arch, Modality, ModelConfig


class Norm(str, enum.Enum):
    pre = "pre"  # x + f(LN(x)) (ViT, BEiT, data2vec 2.0)
    post = "post"  # LN(x + f(x)) (BERT / RoBERTa, wav2vec 2.0 Base)


class Qkv(str, enum.Enum):
    fused = "fused"  # one (D, 3D) projection
    separate = "separate"  # query, key, value projections (HF's names map one to one)


@dataclass(frozen=True)
class Layout:
    norm: Norm = Norm.pre
    qkv: Qkv = Qkv.fused
    key_bias: bool = True  # BEiT's key projection has no bias
    layer_scale: float | None = None  # BEiT: per-channel scales of each residual branch, init 0.1
    final_norm: bool = True  # a layer norm after the last block


GENERIC = Layout()
ROBERTA = Layout(norm=Norm.post, qkv=Qkv.separate, final_norm=False)
WAV2VEC2 = Layout(norm=Norm.post, qkv=Qkv.separate, final_norm=False)
BEIT = Layout(qkv=Qkv.separate, key_bias=False, layer_scale=0.1, final_norm=False)
PAPER = {Modality.text: ROBERTA, Modality.speech: WAV2VEC2, Modality.vision: BEIT}


def layout(model: ModelConfig, modality: Modality) -> Layout:
    """The Transformer layout `model.arch` gives a modality."""
    return PAPER[modality] if model.arch == Arch.paper else GENERIC

"""Vision: how the generic pretraining loop and the downstream heads get their encoder, data and
masks from params and prepared image shards."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from d2v.architecture import layout
from d2v.config import Arch, Method, Modality, ModelConfig, Params, VisionPretrainConfig
from d2v.data.meta import VisionMeta, read_meta
from d2v.data.shards import ImageBatches, ImageSplit, load_image_split
from d2v.decoder import ConvDecoder
from d2v.downstream import DownstreamTask
from d2v.encoder import Encoder
from d2v.masking import MaskInfo, block_mask, inverse_block_mask
from d2v.metrics import top1
from d2v.modalities.beit import RELATIVE, BeitFrontend
from d2v.modalities.image import ImageFrontend
from d2v.sampling import batch_indices
from d2v.train import PretrainSpec


def build_encoder(
    model: ModelConfig, cfg: VisionPretrainConfig, image_size: int, channels: int
) -> Encoder:
    """The generic ViT, or BEiT (HF's Data2VecVisionModel) with `model.arch: paper`."""
    if model.arch == Arch.paper:
        frontend = BeitFrontend(image_size, channels, cfg.patch_size, model.dim, cfg.pos)
        rel_pos = RELATIVE.get(cfg.pos, "none")
        beit = replace(layout(model, Modality.vision), final_norm=cfg.final_norm)
        return Encoder(frontend, model, beit, rel_pos)
    frontend = ImageFrontend(image_size, channels, cfg.patch_size, model.dim, cfg.pos)
    return Encoder(frontend, model)


class VisionImages:
    """Pretraining view of a prepared split: normalized images and their masks (data2vec: BEiT
    block masks; data2vec 2.0: `clone_batch` inverse block masks per image)."""

    def __init__(
        self,
        split: ImageSplit,
        mean: list[float],
        std: list[float],
        grid: tuple[int, int],
        cfg: VisionPretrainConfig,
    ):
        self.batches = ImageBatches(split, batch_size=1, mean=mean, std=std, shuffle=False)
        self.grid = grid
        self.cfg = cfg

    def __len__(self) -> int:
        return len(self.batches.split)

    def indices(self, batch_size: int, step: int, seed: int) -> np.ndarray:
        return batch_indices(len(self), batch_size, step, seed)

    def batch(self, indices: np.ndarray, rows: slice = slice(None)) -> Tensor:
        return self.batches.batch(indices[rows]).images

    def mask(self, indices: np.ndarray, generator: torch.Generator) -> MaskInfo:
        if self.cfg.method == Method.v2:
            m = self.cfg.v2.clone_batch
            info = inverse_block_mask(len(indices) * m, self.grid, self.cfg.v2.mask, generator)
            info.copies = m
            return info
        return block_mask(len(indices), self.grid, self.cfg.v1.mask, generator)


def pretrain_spec(params: Params, prepared_dir: Path) -> PretrainSpec:
    cfg = params.pretrain.vision
    data_cfg = params.data.vision
    meta = read_meta(prepared_dir, VisionMeta)
    split = load_image_split(prepared_dir, "train")
    grid = (data_cfg.image_size // cfg.patch_size,) * 2
    data = VisionImages(split, meta.mean, meta.std, grid, cfg)
    channels = split.images.shape[-1]
    return PretrainSpec.from_config(
        cfg,
        Modality.vision,
        params.model.depth,
        lambda: build_encoder(params.model, cfg, data_cfg.image_size, channels),
        data,
        build_decoder=lambda: ConvDecoder(cfg.v2.decoder, params.model.dim, grid),
        grid=grid,
        span=cfg.v2.mask.block if cfg.method == Method.v2 else round(cfg.v1.mask.min_patches**0.5),
    )


def downstream_task(params: Params, task: str, prepared_dir: Path) -> DownstreamTask:
    """Image classification on the prepared train/val splits, scored by top-1 accuracy."""
    cfg = params.pretrain.vision
    data_cfg = params.data.vision
    meta = read_meta(prepared_dir, VisionMeta)
    train = load_image_split(prepared_dir, "train")
    val = load_image_split(prepared_dir, "val")
    mean, std = meta.mean, meta.std
    channels = train.images.shape[-1]

    def train_pass(indices: np.ndarray, batch_size: int, seed: int) -> ImageBatches:
        return ImageBatches(train, batch_size, mean, std, generator=seed, indices=indices)

    return DownstreamTask(
        name=task,
        modality=Modality.vision,
        dataset="fashion-mnist" if data_cfg.source == "fashion_mnist" else "imagenet-1k",
        metric="top1",
        num_classes=len(meta.classes),
        train_labels=train.labels,
        build_encoder=lambda: build_encoder(params.model, cfg, data_cfg.image_size, channels),
        train_pass=train_pass,
        eval_pass=lambda bs: ImageBatches(val, bs, mean, std, shuffle=False),
        score=lambda logits, labels: {"top1": top1(logits, labels)},
    )

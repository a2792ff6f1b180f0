"""data2vec: a student encodes the masked input and regresses, at the masked positions, the
average of the top-K layers of an EMA teacher that sees the full input.

Dimensions: B batch, T tokens, D width, N masked positions in the batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from d2v.config import LossConfig, TargetConfig
from d2v.encoder import Encoder
from d2v.losses import explained_variance, feature_std, regression_loss
from d2v.masking import MaskInfo
from d2v.targets import make_targets
from d2v.teacher import EMATeacher


class Data2VecOutput(NamedTuple):  # a NamedTuple so ZeRO-3's hooks see its tensors
    loss: Tensor  # scalar
    pred_std: Tensor  # scalar: std of predictions over positions (collapse monitor)
    target_std: Tensor  # scalar: std of targets over positions (collapse monitor)
    target_r2: Tensor  # scalar: share of the target variance the predictions explain
    num_masked: int


class Data2Vec(nn.Module):
    """The student (encoder + regression head). The teacher is held outside the module, so no
    engine, optimizer or precision cast ever touches it; it is passed to `forward`."""

    def __init__(self, encoder: Encoder, targets: TargetConfig, loss: LossConfig, top_k: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.dim, encoder.dim)  # regression head
        self.targets_cfg = targets
        self.loss_cfg = loss
        self.top_k = top_k

    def forward(self, source: Tensor, mask: MaskInfo, teacher: EMATeacher) -> Data2VecOutput:
        pred = self.encode_student(source, mask)
        target = self.encode_teacher(source, mask, teacher)
        return self.regress(pred, target)

    def encode_student(self, source: Tensor, mask: MaskInfo) -> Tensor:
        """The student's predictions at the masked positions: (N, D)."""
        out = self.encoder(source, mask)
        return self.head(out.last[mask.mask])

    @torch.no_grad()
    def encode_teacher(self, source: Tensor, mask: MaskInfo, teacher: EMATeacher) -> Tensor:
        """Targets at the masked positions, from the teacher on the unmasked input: (N, D)."""
        return teacher_targets(source, mask, teacher, self.targets_cfg, self.top_k)

    def regress(self, pred: Tensor, target: Tensor) -> Data2VecOutput:
        return regress(pred, target, self.loss_cfg)


@torch.no_grad()
def teacher_targets(
    source: Tensor, mask: MaskInfo, teacher: EMATeacher, cfg: TargetConfig, top_k: int
) -> Tensor:
    """The teacher runs once per sample on the unmasked input; its targets (B, T, D) are read at
    every mask row's masked positions (a sample's copies share them): (N, D)."""
    out = teacher.model(source, None, collect=cfg.sublayer)
    y = make_targets(out.layers, cfg, top_k, out.padding_mask)
    rows, cols = mask.mask.nonzero(as_tuple=True)
    return y[rows // mask.copies, cols]


def regress(pred: Tensor, target: Tensor, cfg: LossConfig) -> Data2VecOutput:
    """The loss and the collapse / learnability monitors of predictions against targets (N, D)."""
    loss = regression_loss(pred, target, cfg.beta, cfg.scale_by_dim)
    return Data2VecOutput(
        loss=loss,
        pred_std=feature_std(pred.detach()),
        target_std=feature_std(target),
        target_r2=explained_variance(pred.detach(), target),
        num_masked=int(target.shape[0]),
    )

"""data2vec 2.0: the student encodes only the visible tokens of M masked copies of each sample, a
light convolutional decoder predicts the targets at the masked positions, and the EMA teacher
runs once per sample on the full input, its targets shared by the copies.

Dimensions: B samples, M copies, R = B M mask rows, T tokens, K visible tokens per row, D width,
N masked positions over all rows.
"""

from __future__ import annotations

from torch import Tensor, nn

from d2v.config import LossConfig, TargetConfig
from d2v.decoder import ConvDecoder, restore_padding
from d2v.encoder import Encoder
from d2v.masking import MaskInfo
from d2v.model import Data2VecOutput, regress, teacher_targets
from d2v.teacher import EMATeacher


class Data2Vec2(nn.Module):
    """The student (encoder + decoder); the teacher is passed to `forward`, as for `Data2Vec`.

    The encoder's mask embedding is unused (masked tokens are removed, not replaced), so it is
    frozen here; fine-tuning builds a fresh encoder and trains it.
    """

    def __init__(
        self,
        encoder: Encoder,
        decoder: ConvDecoder,
        targets: TargetConfig,
        loss: LossConfig,
        top_k: int,
    ):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.targets_cfg = targets
        self.loss_cfg = loss
        self.top_k = top_k
        mask_emb = getattr(encoder.frontend, "mask_emb", None)
        if isinstance(mask_emb, nn.Parameter):
            mask_emb.requires_grad_(False)

    def forward(self, source: Tensor, mask: MaskInfo, teacher: EMATeacher) -> Data2VecOutput:
        pred = self.encode_student(source, mask)
        target = teacher_targets(source, mask, teacher, self.targets_cfg, self.top_k)
        return regress(pred, target, self.loss_cfg)

    def encode_student(self, source: Tensor, mask: MaskInfo) -> Tensor:
        """The decoder's predictions at every row's masked positions: (N, D)."""
        out = self.encoder(source, mask, visible_only=True)  # (R, K, D)
        padding = None if out.padding_mask is None else restore_padding(out.padding_mask, mask)
        pred = self.decoder(out.last, mask, padding)  # (R, T, D)
        return pred[mask.mask]

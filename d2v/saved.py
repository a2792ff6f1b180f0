"""Reading the torch files that stages write (a pretrained `encoder.pt`, a fine-tuned
`seed<k>.pt`, an HF `pytorch_model.bin`): a truncated or foreign file stops the stage with one
line naming it, not a deserializer's traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from d2v.data.errors import readable


def load_saved(path: Path, weights_only: bool = True) -> Any:
    """`torch.load(path)` to the CPU; an unreadable file raises DataError naming it."""
    with readable(path, "re-run the stage that writes it"):
        return torch.load(path, map_location="cpu", weights_only=weights_only)

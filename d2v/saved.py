"""Reading the torch files that stages write (a pretrained `encoder.pt`, a fine-tuned
`seed<k>.pt`, an HF `pytorch_model.bin`): a truncated or foreign file stops the stage with one
line naming it, not a deserializer's traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from d2v.data.errors import readable


def load_saved(path: Path, weights_only: bool = True, keys: tuple[str, ...] = ()) -> Any:
    """`torch.load(path)` to the CPU, a mapping holding `keys` if any are given; an unreadable
    file, or one without them, raises DataError naming it."""
    with readable(path, "re-run the stage that writes it"):
        saved = torch.load(path, map_location="cpu", weights_only=weights_only)
        if keys and not (isinstance(saved, dict) and set(keys) <= saved.keys()):
            raise ValueError(f"not a mapping holding {', '.join(keys)}")  # another file, this name
        return saved

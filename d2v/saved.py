"""Reading the torch files that stages write (a pretrained `encoder.pt`, a fine-tuned
`seed<k>.pt`, an HF `pytorch_model.bin`): a truncated or foreign file stops the stage with one
line naming it, not a deserializer's traceback."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from d2v.data.errors import DataError

# what torch.load raises on a file that is not a whole torch file (besides an OSError)
UNREADABLE = (RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError)


def short(e: BaseException) -> str:
    """An error's message on one line, at most 200 characters."""
    return " ".join(str(e).split())[:200] or type(e).__name__


def load_saved(path: Path, weights_only: bool = True) -> Any:
    """`torch.load(path)` to the CPU; an unreadable file raises DataError naming it."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except (*UNREADABLE, OSError) as e:
        if isinstance(e, OSError) and e.filename is not None:
            raise  # one it cannot open (missing, a folder, no permission): the error names it
        raise DataError(f"{path}: unreadable ({short(e)}); re-run the stage that writes it") from e

"""The modality registry: every modality has all four roles, and resolving them keeps each
stage's imports to its own side (download / prepare without torch, training without decoders)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

from d2v.config import Modality
from d2v.registry import MODALITIES, ModalityEntry, resolve


def test_every_modality_resolves_every_role_to_a_function() -> None:
    assert set(MODALITIES) == set(Modality)
    for modality in Modality:
        for role in (f.name for f in dataclasses.fields(ModalityEntry)):
            assert callable(resolve(modality, role)), (modality, role)


def test_data_stages_load_no_torch_and_training_loads_no_prepare_time_code() -> None:
    probe = """
import sys
import d2v.runs.download, d2v.runs.prepare
assert "torch" not in sys.modules, "download/prepare import torch"
import d2v.runs.pretrain, d2v.modalities.vision, d2v.modalities.speech, d2v.modalities.text
late = {"soundfile", "scipy.signal", "tokenizers", "d2v.data.archive"} & set(sys.modules)
assert not late, f"training imports prepare-time modules: {sorted(late)}"
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

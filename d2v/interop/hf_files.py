"""Reading and writing an HF model directory (config.json + model.safetensors, or the older
pytorch_model.bin) without the hub: local folders only."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from d2v.interop.mapping import InteropError
from d2v.saved import load_saved


def read_state(hf_dir: Path, prefix: str) -> dict[str, Tensor]:
    """The weights in `hf_dir`, with the task model's `prefix.` (e.g. `data2vec_text.` of a
    Data2VecTextForMaskedLM) stripped so that they read as the base model's."""
    st, pt = hf_dir / "model.safetensors", hf_dir / "pytorch_model.bin"
    if st.exists():
        from safetensors.torch import load_file

        state = load_file(str(st))
    elif pt.exists():
        state = load_saved(pt)
    else:
        raise InteropError(f"{hf_dir}: no model.safetensors or pytorch_model.bin")
    head = f"{prefix}."
    return {k.removeprefix(head): v for k, v in state.items()}


def read_config(hf_dir: Path, model_type: str):
    """config.json of `hf_dir`, checked to be the `model_type` (e.g. data2vec-text)."""
    from transformers import AutoConfig

    if not (hf_dir / "config.json").exists():
        raise InteropError(f"{hf_dir}: no config.json (not an HF model directory)")
    cfg = AutoConfig.from_pretrained(str(hf_dir), local_files_only=True)
    if cfg.model_type != model_type:
        raise InteropError(f"{hf_dir}: model_type {cfg.model_type!r}, expected {model_type!r}")
    return cfg


def require_supported(cfg, checks) -> None:
    """Each (field, ok) of an HF config d2v can represent only when ok: the first that is not
    is named."""
    for key, ok in checks:
        if not ok:
            raise InteropError(f"HF config {key} = {getattr(cfg, key)!r} has no d2v equivalent")


def paper_model(cfg, name: str, dropout: float):
    """The d2v ModelConfig (the paper's encoder) of an HF Data2Vec config's Transformer."""
    from d2v.config import Arch, ModelConfig

    return ModelConfig(
        name=name,
        dim=cfg.hidden_size,
        depth=cfg.num_hidden_layers,
        heads=cfg.num_attention_heads,
        mlp_ratio=cfg.intermediate_size / cfg.hidden_size,
        dropout=float(dropout),
        arch=Arch.paper,
        norm_eps=float(cfg.layer_norm_eps),
    )

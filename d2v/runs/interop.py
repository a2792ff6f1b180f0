"""`d2v export <modality> --to hf DIR` and `d2v import <modality> hf:DIR`: a pretrained
encoder out to an HF Data2Vec model directory, and an HF Data2Vec checkpoint in as a d2v
pretrained directory (encoder.pt + summary.json, what finetune@ / evaluate@ read)."""

from __future__ import annotations

import argparse
import importlib
import logging
from pathlib import Path

import torch
import yaml

from d2v.atomic import atomic_path, write_json
from d2v.config import Modality, to_dict
from d2v.interop.mapping import InteropError
from d2v.saved import load_saved

log = logging.getLogger(__name__)

_MODULES = {
    Modality.text: "d2v.interop.hf_text",
    Modality.vision: "d2v.interop.hf_vision",
    Modality.speech: "d2v.interop.hf_audio",
}


def interop_module(modality: Modality):
    if modality not in _MODULES:
        allowed = ", ".join(m.value for m in _MODULES)
        raise InteropError(f"no HF interop for {modality.value} yet: allowed {allowed}")
    return importlib.import_module(_MODULES[modality])


def run_export(modality: Modality, pretrained: Path, prepared: Path, out: Path) -> Path:
    """models/<m>/pretrained -> an HF model directory `out` (config.json + model.safetensors)
    that `transformers.AutoModel.from_pretrained(out)` loads offline."""
    hf = interop_module(modality)
    path = pretrained / "encoder.pt"
    if not path.exists():
        raise InteropError(f"{path}: missing (run `dvc repro pretrain@{modality.value}` first)")
    saved = load_saved(path, weights_only=False, keys=("encoder", "config"))
    if "hf" in saved["config"]:  # `d2v import` wrote it: its source is the HF model
        source = saved["config"]["hf"].get("source", "an HF directory")
        raise InteropError(f"{path}: imported from {source}, which is the HF model already")
    encoder, model = hf.rebuild(saved["config"], saved["encoder"], prepared)
    hf_model = hf.to_hf(encoder, model)
    with atomic_path(out) as tmp:
        hf_model.save_pretrained(tmp)
    log.info("exported %s's encoder to %s (%s)", modality.value, out, type(hf_model).__name__)
    return out


def run_import(modality: Modality, source: str, out: Path) -> Path:
    """`hf:DIR` -> a d2v pretrained directory `out`: encoder.pt (the encoder's state and the
    model config it needs), config.yaml, summary.json."""
    hf = interop_module(modality)
    if not source.startswith("hf:"):
        raise InteropError(f"import source {source!r}: expected hf:DIR (an HF model directory)")
    hf_dir = Path(source.removeprefix("hf:"))
    encoder, model, shape = hf.from_hf_dir(hf_dir)
    config = {"model": to_dict(model), "hf": {"source": str(hf_dir), **to_dict(shape)}}
    with atomic_path(out) as tmp:
        tmp.mkdir()
        torch.save({"encoder": encoder.state_dict(), "config": config}, tmp / "encoder.pt")
        (tmp / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        write_json(
            tmp / "summary.json",
            {"modality": modality.value, "imported_from": source, "mlflow_run_id": None},
        )
    model_params = [f"model.{k}={v}" for k, v in to_dict(model).items() if k != "name"]
    overrides = " ".join(f"-S {o}" for o in [*model_params, *shape.overrides()])
    log.info("imported %s into %s; the pipeline's params for it: %s", hf_dir, out, overrides)
    return out


def command(args: argparse.Namespace, argv: list[str]) -> None:
    """`d2v export <modality>` / `d2v import <modality> <source>`: HF transformers interop."""
    m = args.modality.value
    if args.command == "export":
        src = Path(args.src or Path("models") / m / "pretrained")
        prepared = Path(args.prepared or Path("data/prepared") / m)
        run_export(args.modality, src, prepared, Path(args.out))
    else:
        run_import(args.modality, args.source, Path(args.out or Path("models") / m / "imported"))

"""Vision interop: a random HF Data2VecVisionModel (BEiT) imported into d2v, and a d2v BEiT
encoder exported and loaded with AutoModel, give the same last hidden state (CLS included) and
per-layer outputs (fp32), for each kind of positions; a checkpoint that does not fit fails
naming the tensor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from d2v.config import Arch, ModelConfig, Sublayer
from d2v.interop import hf_vision
from d2v.interop.mapping import InteropError

transformers = pytest.importorskip("transformers")

MICRO = ModelConfig(dim=32, depth=2, heads=4, arch=Arch.paper)
POSITIONS = ("sincos", "learned", "relative", "shared_relative")


def shape(pos: str, final_norm: bool = False) -> hf_vision.VisionShape:
    return hf_vision.VisionShape(16, 4, 3, pos, final_norm)


def jitter(model: torch.nn.Module, seed: int) -> None:
    """Random values in every tensor (fresh models have unit norms, zero biases and zero
    relative position tables, which a swapped mapping would not show)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def assert_same(hf_model, encoder) -> float:
    images = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = hf_model(images, output_hidden_states=True)
        out = encoder(images, collect=Sublayer.ffn_res)  # pre-norm: the residual stream
    mine = torch.cat([out.cls, out.last], dim=1)
    diff = (ref.last_hidden_state - mine).abs().max().item()
    assert diff < 1e-5
    assert len(out.layers) == len(ref.hidden_states) - 1
    for layer, theirs in zip(out.layers, ref.hidden_states[1:], strict=True):
        assert (layer - theirs[:, 1:]).abs().max().item() < 1e-5
    return diff


# HF's absolute positions are learned; the released pretrained checkpoints share one relative
# position bias and end with a layer norm (use_mean_pooling false), the fine-tuned ones not
IMPORTS = [("learned", False), ("relative", False), ("shared_relative", True)]


@pytest.mark.parametrize(("pos", "final_norm"), IMPORTS)
def test_hf_model_imported_gives_the_same_outputs(
    tmp_path: Path, pos: str, final_norm: bool
) -> None:
    cfg = hf_vision.hf_config(MICRO, shape(pos, final_norm))
    cfg.use_mask_token = False  # as the released checkpoints: d2v keeps its own
    cfg.layer_norm_eps = 1e-12
    torch.manual_seed(0)
    model = transformers.Data2VecVisionModel(cfg)
    jitter(model, 0)
    model.save_pretrained(tmp_path / "hf")
    encoder, d2v_model, got = hf_vision.from_hf_dir(tmp_path / "hf")
    assert got == shape(pos, final_norm) and d2v_model.norm_eps == 1e-12
    loaded = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    assert_same(loaded, encoder)


@pytest.mark.parametrize("pos", POSITIONS)
def test_d2v_encoder_exported_loads_with_automodel_and_matches(tmp_path: Path, pos: str) -> None:
    torch.manual_seed(0)
    encoder = hf_vision.build(MICRO, shape(pos, final_norm=pos == "shared_relative")).eval()
    jitter(encoder, 1)
    hf_vision.to_hf(encoder, MICRO).save_pretrained(tmp_path / "out")
    loaded = transformers.AutoModel.from_pretrained(tmp_path / "out").eval()
    assert type(loaded).__name__ == "Data2VecVisionModel"
    assert_same(loaded, encoder)


def test_a_checkpoint_that_does_not_fit_names_the_tensor(tmp_path: Path) -> None:
    torch.manual_seed(0)
    transformers.Data2VecVisionModel(hf_vision.hf_config(MICRO, shape("relative"))).save_pretrained(
        tmp_path / "hf"
    )
    other = hf_vision.build(
        ModelConfig(dim=32, depth=2, heads=2, arch=Arch.paper), shape("relative")
    )
    with pytest.raises(
        InteropError,
        match=r"relative_position_bias_table has shape \(52, 4\), d2v.s backbone.blocks.0.attn.rel_pos.table",
    ):
        hf_vision.from_hf_dir(tmp_path / "hf", into=other)


def test_fine_tuning_an_import_against_other_model_params_names_the_tensor(
    tmp_path: Path,
) -> None:
    """`d2v import` then finetune@ with params of another width: the first tensor that does
    not fit is named (exit 2 at the CLI), not a bare load_state_dict traceback."""
    from types import SimpleNamespace

    from d2v.config import Modality
    from d2v.runs.finetune import init_encoder
    from d2v.runs.interop import run_import

    torch.manual_seed(0)
    cfg = hf_vision.hf_config(MICRO, shape("learned"))
    transformers.Data2VecVisionModel(cfg).save_pretrained(tmp_path / "hf")
    run_import(Modality.vision, f"hf:{tmp_path / 'hf'}", tmp_path / "pretrained")
    same = SimpleNamespace(build_encoder=lambda: hf_vision.build(MICRO, shape("learned")))
    encoder = init_encoder(same, "pretrained", 0, tmp_path / "pretrained")
    loaded = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    assert_same(loaded, encoder.eval())
    wider = ModelConfig(dim=48, depth=2, heads=4, arch=Arch.paper)
    other = SimpleNamespace(build_encoder=lambda: hf_vision.build(wider, shape("learned")))
    with pytest.raises(InteropError, match=r"encoder\.pt tensor frontend\.cls has shape \(32,\)"):
        init_encoder(other, "pretrained", 0, tmp_path / "pretrained")


def test_cli_exports_a_pretraining_run_s_encoder(tmp_path: Path) -> None:
    """`d2v export vision --to hf DIR` rebuilds the encoder from the run's saved config (model,
    data.vision, pretrain.vision) and writes what AutoModel loads."""
    from d2v.cli import main
    from d2v.config import VisionPretrainConfig, to_dict

    torch.manual_seed(0)
    encoder = hf_vision.build(MICRO, shape("relative")).eval()
    jitter(encoder, 2)
    run = tmp_path / "pretrained"
    run.mkdir()
    config = {
        "model": to_dict(MICRO),
        "data": {"vision": {"image_size": 16}},
        "pretrain": {"vision": to_dict(VisionPretrainConfig(patch_size=4, pos="relative"))},
    }
    torch.save({"encoder": encoder.state_dict(), "config": config}, run / "encoder.pt")
    main(["export", "vision", str(tmp_path / "hf"), "--to", "hf", "--from", str(run)])
    assert_same(transformers.AutoModel.from_pretrained(tmp_path / "hf").eval(), encoder)


def test_old_checkpoints_index_buffers_are_skipped_and_unknown_tensors_named(
    tmp_path: Path,
) -> None:
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    cfg = hf_vision.hf_config(MICRO, shape("relative"))
    transformers.Data2VecVisionModel(cfg).save_pretrained(tmp_path / "hf")
    path = tmp_path / "hf" / "model.safetensors"
    state = load_file(str(path))
    index = "encoder.layer.0.attention.attention.relative_position_bias.relative_position_index"
    state[index] = torch.zeros(17, 17, dtype=torch.long)  # what BEiT-era checkpoints saved
    save_file(state, str(path))
    hf_vision.from_hf_dir(tmp_path / "hf")
    state["encoder.layer.0.adapter.weight"] = torch.zeros(4)
    save_file(state, str(path))
    with pytest.raises(InteropError, match=r"encoder\.layer\.0\.adapter\.weight has no d2v"):
        hf_vision.from_hf_dir(tmp_path / "hf")

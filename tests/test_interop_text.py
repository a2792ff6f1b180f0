"""Text interop: a random HF Data2VecTextModel imported into d2v, and a d2v RoBERTa encoder
exported and loaded with AutoModel, give the same last hidden state and per-layer outputs
(fp32, padding included); a checkpoint that does not fit fails naming the tensor."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from d2v.config import Arch, ModelConfig, Sublayer
from d2v.interop import hf_text
from d2v.interop.mapping import InteropError

transformers = pytest.importorskip("transformers")

PAD = 1
MICRO = ModelConfig(dim=32, depth=3, heads=4, arch=Arch.paper)
SHAPE = hf_text.TextShape(vocab_size=40, max_len=12, pad_id=PAD)


def jitter(model: torch.nn.Module, seed: int) -> None:
    """Random values in every tensor (fresh models have unit norms and zero biases, which a
    swapped mapping would not show)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def ids_with_padding() -> torch.Tensor:
    ids = torch.randint(
        5, SHAPE.vocab_size, (3, SHAPE.max_len), generator=torch.Generator().manual_seed(1)
    )
    ids[:, 0] = 0
    ids[1, 7:] = PAD
    ids[2, 4:] = PAD
    return ids


def assert_same(hf_model, encoder, ids: torch.Tensor) -> float:
    with torch.no_grad():
        ref = hf_model(ids, attention_mask=(ids != PAD).long(), output_hidden_states=True)
        out = encoder(ids, collect=Sublayer.block)
    diff = (ref.last_hidden_state - out.last).abs().max().item()
    assert diff < 1e-5
    assert len(out.layers) == len(ref.hidden_states) - 1
    for mine, theirs in zip(out.layers, ref.hidden_states[1:], strict=True):
        assert (mine - theirs).abs().max().item() < 1e-5
    return diff


def random_hf(tmp_path: Path, **overrides) -> Path:
    cfg = hf_text.hf_config(MICRO, SHAPE)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    torch.manual_seed(0)
    model = transformers.Data2VecTextModel(cfg)
    jitter(model, 0)
    model.save_pretrained(tmp_path / "hf")
    return tmp_path / "hf"


def test_hf_model_imported_gives_the_same_outputs(tmp_path: Path) -> None:
    hf_dir = random_hf(tmp_path, layer_norm_eps=1e-12, type_vocab_size=2)  # HF's defaults
    encoder, model, shape = hf_text.from_hf_dir(hf_dir)
    assert (model.norm_eps, shape.type_vocab, shape.max_len) == (1e-12, 2, SHAPE.max_len)
    hf_model = transformers.AutoModel.from_pretrained(hf_dir).eval()
    assert_same(hf_model, encoder, ids_with_padding())


def test_d2v_encoder_exported_loads_with_automodel_and_matches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = hf_text.build(MICRO, SHAPE).eval()
    jitter(encoder, 1)
    hf_text.to_hf(encoder, MICRO).save_pretrained(tmp_path / "out")
    loaded = transformers.AutoModel.from_pretrained(tmp_path / "out").eval()
    assert type(loaded).__name__ == "Data2VecTextModel"
    assert_same(loaded, encoder, ids_with_padding())


def test_a_checkpoint_that_does_not_fit_names_the_tensor(tmp_path: Path) -> None:
    hf_dir = random_hf(tmp_path)
    wider = hf_text.build(ModelConfig(dim=48, depth=3, heads=4, arch=Arch.paper), SHAPE)
    with pytest.raises(InteropError, match=r"embeddings\.word_embeddings\.weight has shape"):
        hf_text.from_hf_dir(hf_dir, into=wider)
    from safetensors.torch import load_file, save_file

    state = load_file(str(hf_dir / "model.safetensors"))
    del state["encoder.layer.1.attention.self.key.bias"]
    save_file(state, str(hf_dir / "model.safetensors"))
    with pytest.raises(InteropError, match=r"lacks encoder\.layer\.1\.attention\.self\.key\.bias"):
        hf_text.from_hf_dir(hf_dir)


def test_the_generic_encoder_is_refused_by_export() -> None:
    generic = hf_text.build(ModelConfig(dim=32, depth=1, heads=4, arch=Arch.generic), SHAPE)
    with pytest.raises(InteropError, match="model.arch: paper"):
        hf_text.to_hf(generic, ModelConfig(dim=32, depth=1, heads=4, arch=Arch.generic))


def pretrained_dir(tmp_path: Path, model: ModelConfig) -> tuple[Path, Path]:
    """A text pretraining run's outputs as pretrain@text writes them, and the prepared meta."""
    from d2v.config import to_dict

    torch.manual_seed(0)
    encoder = hf_text.build(model, SHAPE)
    jitter(encoder, 2)
    out, prepared = tmp_path / "pretrained", tmp_path / "prepared"
    out.mkdir()
    prepared.mkdir()
    config = {"model": to_dict(model)}
    torch.save({"encoder": encoder.state_dict(), "config": config}, out / "encoder.pt")
    special = {"bos": 0, "pad": PAD, "eos": 2, "unk": 3, "mask": 4}
    (prepared / "meta.json").write_text(__import__("json").dumps({"special_ids": special}))
    return out, prepared


def test_cli_export_then_import_round_trips(tmp_path: Path) -> None:
    from d2v.cli import main

    src, prepared = pretrained_dir(tmp_path, MICRO)
    hf_dir, back = tmp_path / "hf", tmp_path / "imported"
    main(
        [
            "export",
            "text",
            "--to",
            "hf",
            str(hf_dir),
            "--from",
            str(src),
            "--prepared",
            str(prepared),
        ]
    )
    assert (hf_dir / "config.json").exists() and (hf_dir / "model.safetensors").exists()
    main(["import", "text", f"hf:{hf_dir}", "--to", str(back)])
    before = torch.load(src / "encoder.pt", weights_only=False)["encoder"]
    after = torch.load(back / "encoder.pt", weights_only=False)
    assert after["config"]["model"]["arch"] == "paper"
    assert before.keys() == after["encoder"].keys()
    for k, v in before.items():
        assert torch.equal(v, after["encoder"][k]), k


def test_cli_refuses_the_generic_encoder_and_a_bad_checkpoint_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from d2v.cli import main

    src, prepared = pretrained_dir(
        tmp_path, ModelConfig(dim=32, depth=1, heads=4, arch=Arch.generic)
    )
    with pytest.raises(SystemExit) as e:
        main(
            [
                "export",
                "text",
                "--to",
                "hf",
                str(tmp_path / "hf"),
                "--from",
                str(src),
                "--prepared",
                str(prepared),
            ]
        )
    assert e.value.code == 2 and "model.arch" in capsys.readouterr().err
    hf_dir = random_hf(tmp_path)
    from safetensors.torch import load_file, save_file

    state = load_file(str(hf_dir / "model.safetensors"))
    name = "encoder.layer.2.output.dense.weight"
    state[name] = state[name][:, :8].contiguous()
    save_file(state, str(hf_dir / "model.safetensors"))
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(["import", "text", f"hf:{hf_dir}", "--to", str(tmp_path / "imported")])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert "encoder.layer.2.output.dense.weight has shape (32, 8)" in err[0]

"""Speech interop: a random HF Data2VecAudioModel imported into d2v, and a d2v data2vec-audio
encoder (waveform front end) exported and loaded with AutoModel, give the same last hidden
state and per-layer outputs (fp32, padding included); a checkpoint that does not fit fails
naming the tensor; the log-mel front end is refused by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from d2v.config import Arch, ModelConfig, SpeechPretrainConfig, Sublayer
from d2v.interop import hf_audio
from d2v.interop.mapping import InteropError
from d2v.modalities.audio import Audio
from d2v.modalities.speech import build_encoder

transformers = pytest.importorskip("transformers")

MICRO = ModelConfig(dim=32, depth=2, heads=4, arch=Arch.paper)
SHAPE = hf_audio.AudioShape(16, [10, 3, 3, 3, 3, 2, 2], [5, 2, 2, 2, 2, 2, 2], 19, 4, 2)


def jitter(model: torch.nn.Module, seed: int) -> None:
    """Random values in every tensor (fresh models have unit norms and zero biases, which a
    swapped mapping would not show)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))


def assert_same(hf_model, encoder) -> float:
    lengths = torch.tensor([8000, 5000])
    samples = torch.arange(8000)[None] < lengths[:, None]
    wave = torch.randn(2, 8000, generator=torch.Generator().manual_seed(3)) * samples
    with torch.no_grad():
        ref = hf_model(wave, attention_mask=samples.long(), output_hidden_states=True)
        out = encoder(Audio(wave, lengths), collect=Sublayer.block)
    diff = (ref.last_hidden_state - out.last).abs().max().item()
    assert diff < 1e-5
    assert out.padding_mask[1].any() and len(out.layers) == len(ref.hidden_states) - 1
    for mine, theirs in zip(out.layers, ref.hidden_states[1:], strict=True):
        assert (mine - theirs).abs().max().item() < 1e-5
    return diff


def test_hf_model_imported_gives_the_same_outputs(tmp_path: Path) -> None:
    cfg = hf_audio.hf_config(MICRO, SHAPE)
    cfg.mask_time_prob = 0.0  # no masked_spec_embed: d2v keeps its own mask embedding
    cfg.layer_norm_eps = 1e-6
    torch.manual_seed(0)
    model = transformers.Data2VecAudioModel(cfg)
    jitter(model, 0)
    model.save_pretrained(tmp_path / "hf")
    encoder, d2v_model, shape = hf_audio.from_hf_dir(tmp_path / "hf")
    assert shape == SHAPE and d2v_model.norm_eps == 1e-6
    assert_same(transformers.AutoModel.from_pretrained(tmp_path / "hf").eval(), encoder)


def test_d2v_encoder_exported_loads_with_automodel_and_matches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    encoder = hf_audio.build(MICRO, SHAPE).eval()
    jitter(encoder, 1)
    hf_audio.to_hf(encoder, MICRO).save_pretrained(tmp_path / "out")
    loaded = transformers.AutoModel.from_pretrained(tmp_path / "out").eval()
    assert type(loaded).__name__ == "Data2VecAudioModel"
    assert_same(loaded, encoder)


def test_a_checkpoint_that_does_not_fit_names_the_tensor(tmp_path: Path) -> None:
    torch.manual_seed(0)
    transformers.Data2VecAudioModel(hf_audio.hf_config(MICRO, SHAPE)).save_pretrained(
        tmp_path / "hf"
    )
    narrow = hf_audio.AudioShape(8, SHAPE.conv_kernels, SHAPE.conv_strides, 19, 4, 2)
    with pytest.raises(
        InteropError,
        match=r"feature_projection\.layer_norm\.weight has shape \(16,\), d2v's frontend",
    ):
        hf_audio.from_hf_dir(tmp_path / "hf", into=hf_audio.build(MICRO, narrow))


def test_the_log_mel_front_end_is_refused_by_name() -> None:
    encoder = build_encoder(MICRO, SpeechPretrainConfig(frontend="fbank", pos_groups=4))
    with pytest.raises(InteropError, match="frontend = 'fbank'"):
        hf_audio.to_hf(encoder, MICRO)


@pytest.mark.parametrize("frontend", ["waveform", "fbank"])
def test_cli_exports_a_pretraining_run_s_waveform_encoder_and_refuses_log_mel(
    tmp_path: Path, capsys: pytest.CaptureFixture, frontend: str
) -> None:
    from d2v.cli import main
    from d2v.config import to_dict

    cfg = SHAPE.pretrain_config()
    cfg.frontend = frontend
    torch.manual_seed(0)
    encoder = build_encoder(MICRO, cfg).eval()
    jitter(encoder, 2)
    run = tmp_path / "pretrained"
    run.mkdir()
    config = {"model": to_dict(MICRO), "pretrain": {"speech": to_dict(cfg)}}
    torch.save({"encoder": encoder.state_dict(), "config": config}, run / "encoder.pt")
    argv = ["export", "speech", str(tmp_path / "hf"), "--to", "hf", "--from", str(run)]
    if frontend == "fbank":
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and "pretrain.speech.frontend = 'fbank'" in capsys.readouterr().err
        return
    main(argv)
    assert_same(transformers.AutoModel.from_pretrained(tmp_path / "hf").eval(), encoder)

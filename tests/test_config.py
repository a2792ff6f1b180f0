"""Bad params are refused before any compute, naming the param and its allowed range."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from d2v.cli import main
from d2v.collapse import CollapseMonitor
from d2v.config import CollapseConfig, ConfigError, load_params
from d2v.params_io import compose
from tests.helpers import REPO, subprocess_env, tiny_params


@pytest.mark.parametrize(
    ("override", "param", "allowed"),
    [
        ("pretrain.vision.v1.ema.tau_end=1.5", "pretrain.vision.v1.ema.tau_end", "(0, 1]"),
        ("pretrain.vision.v1.ema.tau_start=0", "pretrain.vision.v1.ema.tau_start", "(0, 1]"),
        ("pretrain.vision.v1.targets.top_k=9", "pretrain.vision.v1.targets.top_k", "[1, depth=4]"),
        ("pretrain.vision.v1.targets.top_k=0", "pretrain.vision.v1.targets.top_k", "[1, depth=4]"),
        ("pretrain.vision.v1.mask.ratio=1.0", "pretrain.vision.v1.mask.ratio", "(0, 1)"),
        (
            "pretrain.vision.v1.targets.norm=batch",
            "pretrain.vision.v1.targets.norm",
            "instance, layer, none",
        ),
        (
            "pretrain.vision.v1.targets.sublayer=mlp",
            "pretrain.vision.v1.targets.sublayer",
            "attn, ffn, ffn_res, block",
        ),
        ("pretrain.vision.method=v3", "pretrain.vision.method", "v1, v2"),
        ("pretrain.vision.v2.mask.ratio=1.0", "pretrain.vision.v2.mask.ratio", "(0, 1)"),
        ("pretrain.vision.v2.mask.block=0", "pretrain.vision.v2.mask.block", ">= 1"),
        ("pretrain.vision.v2.clone_batch=0", "pretrain.vision.v2.clone_batch", "[1, 64]"),
        ("pretrain.vision.v2.decoder.groups=3", "pretrain.vision.v2.decoder.groups", "divisor"),
        ("pretrain.speech.v2.decoder.layers=0", "pretrain.speech.v2.decoder.layers", ">= 1"),
        ("pretrain.speech.v2.mask.length=0", "pretrain.speech.v2.mask.length", ">= 1"),
        ("pretrain.text.v2.mask.prob=1.0", "pretrain.text.v2.mask.prob", "(0, 1)"),
        (
            "pretrain.text.v2.decoder.projection_layers=3",
            "pretrain.text.v2.decoder.projection_layers",
            "1 or 2",
        ),
        ("pretrain.text.v2.targets.top_k=5", "pretrain.text.v2.targets.top_k", "[1, depth=4]"),
        ("finetune.imagenet.modality=smell", "finetune.imagenet.modality", "vision, speech, text"),
        ("pretrain.vision.patch_size=5", "pretrain.vision.patch_size", "divisor"),
        ("deepspeed.zero_stage=4", "deepspeed.zero_stage", "0, 1, 2, 3"),
        ("pretrain.speech.v1.mask.prob=0", "pretrain.speech.v1.mask.prob", "(0, 1]"),
        ("pretrain.speech.v1.targets.top_k=5", "pretrain.speech.v1.targets.top_k", "[1, depth=4]"),
        ("pretrain.speech.conv_strides=[5,2]", "pretrain.speech.conv_strides", "7 ints"),
        ("pretrain.speech.pos_groups=5", "pretrain.speech.pos_groups", "divisor of model.dim"),
        ("pretrain.text.v1.mask.prob=0.0", "pretrain.text.v1.mask.prob", "(0, 1)"),
        (
            "pretrain.text.v1.mask.random_frac=0.5",
            "pretrain.text.v1.mask.random_frac",
            "[0, 1 - mask",
        ),
        ("pretrain.text.v1.loss.beta=-1", "pretrain.text.v1.loss.beta", ">= 0"),
        ("data.speech.source=youtube", "data.speech.source", "flite, librispeech"),
        ("data.speech.pitches=[500.0]", "data.speech.pitches", "[40, 400] Hz"),
        ("data.speech.test_speakers=40", "data.speech.test_speakers", "36 speakers"),
        ("data.speech.train_subsets=[train-all]", "data.speech.train_subsets", "train-clean-100"),
        ("data.text.tasks=[squad]", "data.text.tasks", "cola, sst2"),
        ("data.text.vocab_size=100", "data.text.vocab_size", "[261, 1000000]"),
        ("data.text.source=glue", "data.text.corpus_path", "a local .txt file"),
        (
            "finetune.librispeech.freeze_steps=9999",
            "finetune.librispeech.freeze_steps",
            "[0, optim",
        ),
        ("finetune.librispeech.mask_prob=1.0", "finetune.librispeech.mask_prob", "[0, 1)"),
        ("finetune.sst2.label_fraction=0", "finetune.sst2.label_fraction", "(0, 1]"),
        ("finetune.sst2.head_norm=group", "finetune.sst2.head_norm", "layer | batch"),
        # a negative gets its field's own range, not only the rule that numbers are >= 0
        ("pretrain.text.v1.optim.batch_size=-4", "v1.optim.batch_size = -4", "allowed >= 1"),
        ("finetune.sst2.label_fraction=-0.5", "sst2.label_fraction = -0.5", "allowed (0, 1]"),
        ("data.speech.pitches=[-100.0]", "data.speech.pitches = [-100.0]", "[40, 400] Hz"),
        ("pretrain.text.collapse.check_after=-1", "collapse.check_after = -1", "allowed >= 0"),
        # a cross-field check waits for the field it relies on
        ("finetune.librispeech.optim.steps=0", "librispeech.optim.steps = 0", "allowed >= 1"),
        ("sweep.vision.space.mask_ratio.high=null", "space.mask_ratio.high", "a number"),
    ],
)
def test_invalid_params_name_the_param_and_range(override: str, param: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as e:
        tiny_params(override)
    assert param in str(e.value) and allowed in str(e.value)


def test_unknown_key_and_wrong_type_are_refused() -> None:
    data = compose(REPO / "conf")
    data["pretrain"]["vision"]["v1"]["ema"]["tau"] = 0.9
    with pytest.raises(ConfigError, match=r"unknown param pretrain\.vision\.v1\.ema\.tau: did"):
        load_params(data)
    data = compose(REPO / "conf")
    data["pretrain"]["vision"]["v2"]["optim"]["steps"] = "many"
    with pytest.raises(ConfigError, match=r"pretrain\.vision\.v2\.optim\.steps = 'many'"):
        load_params(data)
    data = compose(REPO / "conf")
    data["pretrain"]["speech"]["method"] = "v3"
    with pytest.raises(
        ConfigError, match=r"pretrain\.speech\.method = 'v3': allowed one of v1, v2"
    ):
        load_params(data)


def test_default_params_yaml_is_the_composed_conf() -> None:
    """The committed params.yaml is what DVC's Hydra composition writes from conf/."""
    assert yaml.safe_load((REPO / "params.yaml").read_text()) == compose(REPO / "conf")


def test_cli_refuses_bad_params_before_compute(tmp_path) -> None:
    data = compose(REPO / "conf")
    data["pretrain"]["vision"]["v1"]["ema"]["tau_end"] = 2.0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    r = subprocess.run(
        [sys.executable, "-m", "d2v.cli", "pretrain", "vision"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert r.returncode == 2
    assert "pretrain.vision.v1.ema.tau_end = 2.0: allowed (0, 1]" in r.stderr
    assert not (tmp_path / "models").exists()


def test_collapse_monitor_needs_patience_after_warmup() -> None:
    m = CollapseMonitor(CollapseConfig(min_target_std=0.1, check_after=10, patience=2))
    assert not m.check(5, 0.0)  # before check_after
    assert not m.check(10, 0.01)
    assert not m.check(20, 0.5)  # recovered: strikes reset
    assert not m.check(30, 0.01)
    assert m.check(40, 0.01)


def _exit_2_one_line(capfd, *argv: str) -> str:
    """Run `d2v <argv>` in-process; it must exit 2 with one line on stderr and no traceback."""
    with pytest.raises(SystemExit) as e:
        main(list(argv))
    err = capfd.readouterr().err
    assert e.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        (
            "pretrain.vision.v2.ema.tau_ned=0.9",
            "unknown param pretrain.vision.v2.ema.tau_ned: did you mean tau_end?",
        ),
        ("pretrain.visoin.method=v1", "unknown param pretrain.visoin.method: did you mean vision?"),
        ("modle=mini", "unknown param modle: did you mean model?"),
        ("model=mcro", "unknown option model=mcro in "),
        ("model=huge", "allowed: base, large, micro, mini"),
        ("deepspeed=zero5", "allowed: zero0, zero1, zero2, zero3"),
    ],
)
def test_typo_in_an_override_exits_2_naming_the_closest(
    tmp_path, capfd, override: str, expected: str
) -> None:
    out = tmp_path / "params.yaml"
    line = _exit_2_one_line(
        capfd, "params", "--conf", str(REPO / "conf"), "--out", str(out), override
    )
    assert expected in line
    assert override.split("=")[0] in line
    assert not out.exists()


def test_typo_in_params_yaml_exits_2_naming_the_closest(tmp_path, monkeypatch, capfd) -> None:
    data = compose(REPO / "conf")
    data["pretrain"]["vision"]["v2"]["ema"]["tau_ned"] = data["pretrain"]["vision"]["v2"][
        "ema"
    ].pop("tau_end")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)
    line = _exit_2_one_line(capfd, "prepare", "vision")
    assert "unknown param pretrain.vision.v2.ema.tau_ned: did you mean tau_end?" in line
    assert not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["pretrain", "visoin"], "unknown modality 'visoin': did you mean vision?"),
        (["pretian", "vision"], "unknown command 'pretian': did you mean pretrain?"),
        (["finetune", "imagnet", "--params", str(REPO / "params.yaml")], "did you mean imagenet?"),
    ],
)
def test_typo_on_the_command_line_exits_2_naming_the_closest(capfd, argv, expected) -> None:
    assert expected in _exit_2_one_line(capfd, *argv)


def test_help_lists_modalities_tasks_and_config_groups(monkeypatch, capsys) -> None:
    monkeypatch.chdir(REPO)
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0
    assert "modalities: vision, speech, text" in out
    assert "imagenet (vision)" in out and "librispeech (speech)" in out and "cola (text)" in out
    assert "model: base, large, micro, mini" in out and "deepspeed: zero0, zero1" in out


# --- schedules that cannot finish within the run ----------------------------------------------


def test_default_schedules_finish_within_their_runs() -> None:
    """Every EMA anneal of the composed defaults ends within its run (nothing is adapted)."""
    params = load_params(compose(REPO / "conf"))
    for m in ("vision", "speech", "text"):
        for method in ("v1", "v2"):
            block = getattr(getattr(params.pretrain, m), method)
            assert block.ema.anneal_steps <= block.optim.steps, f"pretrain.{m}.{method}"
            assert block.ema.within(block.optim.steps) == block.ema


def test_ema_anneal_longer_than_the_run_is_fitted_to_it_and_said(caplog) -> None:
    from d2v.config import Modality
    from d2v.teacher import tau_at
    from d2v.train import PretrainSpec

    params = tiny_params("pretrain.vision.v2.ema.anneal_steps=1000")  # TINY: 30 steps
    cfg = params.pretrain.vision
    with caplog.at_level("INFO", logger="d2v.train"):
        spec = PretrainSpec.from_config(cfg, Modality.vision, 4, lambda: None, None)
    assert spec.ema.anneal_steps == 30 and cfg.v2.ema.anneal_steps == 1000
    assert tau_at(30, spec.ema.tau_start, spec.ema.tau_end, spec.ema.anneal_steps) == 0.9999
    assert "pretrain.vision.v2.ema.anneal_steps=1000 is longer than the run" in caplog.text
    assert "pretrain.vision.v2.optim.steps=30" in caplog.text
    assert "collapse.check_after=1000 >= the run's 30 steps: no collapse check" in caplog.text
    caplog.clear()
    spec = PretrainSpec.from_config(
        tiny_params("pretrain.vision.v2.ema.anneal_steps=20").pretrain.vision,
        Modality.vision,
        4,
        lambda: None,
        None,
    )
    assert spec.ema.anneal_steps == 20 and "longer than the run" not in caplog.text


@pytest.mark.parametrize(
    ("override", "param", "allowed"),
    [
        (
            "pretrain.vision.v2.optim.warmup_steps=30",
            "pretrain.vision.v2.optim.warmup_steps",
            "[0, steps=30)",
        ),
        ("finetune.sst2.optim.warmup_steps=300", "finetune.sst2.optim.warmup_steps", "[0, steps"),
        (
            "finetune.librispeech.freeze_steps=1000",
            "finetune.librispeech.freeze_steps",
            "[0, optim.steps=1000)",
        ),
    ],
)
def test_schedule_as_long_as_the_run_is_refused(override: str, param: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as e:
        tiny_params(override)
    assert param in str(e.value) and allowed in str(e.value)


# --- one source of defaults --------------------------------------------------------------------

KEYED = ("finetune", "sweep", "ablate")  # maps whose entries are the user's own (tasks, studies)


def _diffs(code, conf, path=""):
    if isinstance(code, dict) and isinstance(conf, dict):
        for k in sorted(set(code) | set(conf)):
            yield from _diffs(code.get(k), conf.get(k), f"{path}.{k}" if path else k)
    elif code != conf:
        yield f"{path}: code {code!r}, conf {conf!r}"


def test_code_defaults_are_the_composed_conf() -> None:
    """`Params()` built from the dataclass defaults is the composed conf/ (keyed maps aside), so
    code built from defaults runs the experiment params.yaml describes."""
    from d2v.config import Params, to_dict

    code, conf = to_dict(Params()), to_dict(load_params(compose(REPO / "conf")))
    for key in KEYED:
        assert code.pop(key) == {}
        conf.pop(key)
    assert list(_diffs(code, conf)) == []


def _defaults_every_entry_gives(cls, entries: list[dict], path: str) -> list[str]:
    import dataclasses
    import typing

    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        given = [e[f.name] for e in entries if f.name in e]
        if dataclasses.is_dataclass(hints[f.name]):
            out += _defaults_every_entry_gives(hints[f.name], given, f"{path}.{f.name}")
        has_default = f.default is not dataclasses.MISSING or (
            f.default_factory is not dataclasses.MISSING
        )
        if has_default and len(given) == len(entries):
            out.append(f"{path}.{f.name}")
    return out


def test_keyed_entries_have_defaults_only_where_an_entry_may_omit_them() -> None:
    """In `finetune.<task>`, `sweep.<m>` (and its space) and `ablate.<m>`, the yaml is the source:
    a field that every entry gives has no code default (the loader requires it), and a field
    with a default is one that some entry leaves out (an optional "off")."""
    from d2v.config import AblateConfig, SweepConfig, SweepDim, TaskConfig

    data = compose(REPO / "conf")
    dims = [d for s in data["sweep"].values() for d in s["space"].values()]
    found = (
        _defaults_every_entry_gives(TaskConfig, list(data["finetune"].values()), "finetune.*")
        + _defaults_every_entry_gives(SweepConfig, list(data["sweep"].values()), "sweep.*")
        + _defaults_every_entry_gives(SweepDim, dims, "sweep.*.space.*")
        + _defaults_every_entry_gives(AblateConfig, list(data["ablate"].values()), "ablate.*")
    )
    assert found == []


def test_keyed_entry_without_a_required_field_is_refused() -> None:
    data = compose(REPO / "conf")
    del data["finetune"]["sst2"]["eval_batch_size"]
    with pytest.raises(ConfigError, match=r"missing param finetune\.sst2\.eval_batch_size"):
        load_params(data)
    data = compose(REPO / "conf")
    assert "freeze_steps" not in data["finetune"]["sst2"]
    assert load_params(data).finetune["sst2"].freeze_steps == 0  # optional: off when left out

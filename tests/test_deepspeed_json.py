"""A user's DeepSpeed JSON (`deepspeed.config_file`) is merged with the keys d2v owns; a file
that contradicts them, sets what d2v cannot honour, or cannot be read is refused, naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from d2v.cli import main
from d2v.config import ConfigError, DeepSpeedConfig, OptimConfig
from d2v.config.deepspeed_json import merge_user_config
from tests.helpers import REPO

OURS = {
    "train_batch_size": 32,
    "train_micro_batch_size_per_gpu": 16,
    "gradient_accumulation_steps": 1,
    "gradient_clipping": 3.0,
    "zero_optimization": {"stage": 2},
    "steps_per_print": 2**31 - 1,
}


def _file(tmp_path: Path, data) -> Path:
    path = tmp_path / "ds.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def test_user_keys_are_merged_and_owned_keys_may_repeat_ours(tmp_path) -> None:
    user = {
        "train_batch_size": 32,  # the same as d2v's: accepted
        "zero_optimization": {"stage": 2, "reduce_bucket_size": 1000, "overlap_comm": True},
        "steps_per_print": 50,  # not d2v's: the user's wins
        "wall_clock_breakdown": True,
    }
    merged = merge_user_config(OURS, _file(tmp_path, user))
    assert merged["zero_optimization"] == {
        "stage": 2,
        "reduce_bucket_size": 1000,
        "overlap_comm": True,
    }
    assert merged["steps_per_print"] == 50 and merged["wall_clock_breakdown"] is True
    assert merged["train_micro_batch_size_per_gpu"] == 16
    assert OURS["zero_optimization"] == {"stage": 2}  # ours is not modified
    assert merge_user_config(OURS, None) is OURS


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ({"train_batch_size": 256}, "sets train_batch_size=256, but d2v derives"),
        ({"zero_optimization": {"stage": 3}}, "zero_optimization.stage=3, but d2v derives"),
        ({"gradient_clipping": 1.0}, "optim.grad_clip"),
        ({"optimizer": {"type": "Adam"}}, "sets 'optimizer', which d2v cannot honour"),
        ({"fp16": {"enabled": True}}, "deepspeed.precision"),
        ([1, 2], "allowed a JSON object"),
        ('{"train_batch_size": 32,\n "steps_per_print": }', "invalid JSON at line 2"),
    ],
)
def test_contradicting_or_unusable_file_is_refused_naming_it(tmp_path, user, expected) -> None:
    path = _file(tmp_path, user)
    with pytest.raises(ConfigError) as e:
        merge_user_config(OURS, path)
    assert str(path) in str(e.value) and expected in str(e.value)


def test_disabled_precision_block_is_accepted(tmp_path) -> None:
    merged = merge_user_config(OURS, _file(tmp_path, {"bf16": {"enabled": False}}))
    assert merged["bf16"] == {"enabled": False}


def test_deepspeed_checks_the_merged_config(tmp_path) -> None:
    """The engine's own config class accepts the merge, and a mistyped DeepSpeed key in the file
    is refused naming the file (not a traceback from inside deepspeed.initialize)."""
    from d2v.train import deepspeed_config

    optim = OptimConfig(batch_size=32, grad_clip=3.0)
    good = _file(tmp_path, {"zero_optimization": {"reduce_bucket_size": 1000}})
    config = deepspeed_config(DeepSpeedConfig(config_file=str(good)), optim, world_size=1)
    assert config["zero_optimization"] == {"stage": 2, "reduce_bucket_size": 1000}
    assert config["train_batch_size"] == config["train_micro_batch_size_per_gpu"] == 32
    bad = _file(tmp_path, {"zero_optimization": {"reduce_bucket_sise": 1000}})
    with pytest.raises(
        ConfigError, match="DeepSpeed refuses the merged config.*reduce_bucket_sise"
    ):
        deepspeed_config(DeepSpeedConfig(config_file=str(bad)), optim, world_size=1)


def test_missing_file_exits_2_before_compute_naming_it(tmp_path, monkeypatch, capfd) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["deepspeed"]["config_file"] = "conf/my_deepspeed.json"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["pretrain", "vision"])
    err = capfd.readouterr().err
    assert e.value.code == 2
    assert "deepspeed.config_file conf/my_deepspeed.json not found" in err
    assert not (tmp_path / "models").exists() and not (tmp_path / "data").exists()

"""A user's own DeepSpeed JSON config (`deepspeed.config_file`), merged with what d2v needs.

d2v builds the engine's config from params (d2v/train.py `deepspeed_config`). A user's file adds
to it (ZeRO tuning such as bucket sizes or offload, communication, profiling, logging) and may
override any key d2v does not own. The keys d2v owns are derived from params: a file may repeat
them with the same value, and a different value is refused, naming the key and the param to set
instead (silently winning would train with another batch than the one recorded). Keys d2v cannot
honour are refused: it passes its own AdamW and sets the learning rate every step (no DeepSpeed
`optimizer` / `scheduler`), and it runs bf16 through torch.autocast with fp32 weights and EMA
(`deepspeed.precision`, no `fp16` / `bf16` / `amp` block).

Torch-free (DeepSpeed is imported only to check a merged config): params validation reads the
file before any compute.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from d2v.config.base import ConfigError

# key path -> the param that sets it
OWNED = {
    ("train_batch_size",): "the pretraining optim.batch_size",
    ("train_micro_batch_size_per_gpu",): "optim.batch_size / the rank count",
    ("gradient_accumulation_steps",): "d2v (1: one optimizer step per global batch)",
    ("gradient_clipping",): "the pretraining optim.grad_clip",
    ("zero_optimization", "stage"): "deepspeed.zero_stage",
}
REFUSED = {
    "optimizer": "d2v passes its own AdamW (set the pretraining optim params)",
    "scheduler": "d2v sets the learning rate each step (optim.lr, warmup_steps, min_lr_ratio)",
    "fp16": "d2v runs mixed precision through torch.autocast (set deepspeed.precision)",
    "bf16": "d2v runs mixed precision through torch.autocast (set deepspeed.precision)",
    "amp": "d2v runs mixed precision through torch.autocast (set deepspeed.precision)",
}


def read_user_config(path: str | Path, param: str = "deepspeed.config_file") -> dict[str, Any]:
    """The user's JSON object, with the keys d2v cannot honour refused; ConfigError naming the
    file (and line) otherwise."""
    path = Path(path)
    where = f"{param} {path}"
    if not path.is_file():
        raise ConfigError(f"{where} {'is not a file' if path.exists() else 'not found'}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(
            f"{where}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where} unreadable: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: allowed a JSON object of DeepSpeed settings")
    for key, why in REFUSED.items():
        block = data.get(key)
        enabled = not isinstance(block, dict) or block.get("enabled", True) is not False
        if key in data and enabled:
            raise ConfigError(f"{where} sets {key!r}, which d2v cannot honour: {why}")
    return data


def merge_user_config(
    ours: dict[str, Any], path: str | Path | None, param: str = "deepspeed.config_file"
) -> dict[str, Any]:
    """`ours` with the user's file merged in (nested objects merged key by key, the file's
    values winning), after checking that the file agrees with every key d2v owns."""
    if path is None:
        return ours
    user = read_user_config(path, param)
    for keys, source in OWNED.items():
        theirs, mine = _get(user, keys), _get(ours, keys)
        if theirs is not _MISSING and theirs != mine:
            name = ".".join(keys)
            raise ConfigError(
                f"{param} {path} sets {name}={theirs!r}, but d2v derives {name}={mine!r} from "
                f"{source}: remove it from the file or set the param"
            )
    return _merge(copy.deepcopy(ours), user)


def check_with_deepspeed(
    config: dict[str, Any], path: str | Path, param: str = "deepspeed.config_file"
) -> None:
    """DeepSpeed's own validation of a merged config (unknown or mistyped keys, bad values), as a
    ConfigError naming the user's file rather than a traceback from inside the engine."""
    from deepspeed.runtime.config import DeepSpeedConfig as EngineConfig

    try:
        EngineConfig(copy.deepcopy(config))
    except Exception as e:  # pydantic's ValidationError, DeepSpeed's own config errors, ...
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        raise ConfigError(
            f"{param} {path}: DeepSpeed refuses the merged config: {'; '.join(lines[:3])}"
        ) from None


_MISSING = object()


def _get(data: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return _MISSING
        data = data[key]
    return data


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base

"""Reading and composing params: `conf/` Hydra groups -> the dict DVC writes to params.yaml.

`compose` is what `dvc exp run -S ...` does with Hydra enabled (dvc.utils.hydra.compose_and_dump),
so `make params` and Optuna trials produce exactly the params a DVC experiment would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from d2v.config import ConfigError, Params, load_params, to_dict
from d2v.config.base import did_you_mean, suggest

log = logging.getLogger(__name__)


def read_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate a params file; raises ConfigError naming the file (and line) or the
    bad param."""
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise ConfigError(f"params file {path} {what} (compose it with `d2v params`)")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"params file {path}: {_yaml_error(e)}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"params file {path} unreadable: {e}") from None
    if not data:
        raise ConfigError(f"params file {path} is empty (compose it with `d2v params`)")
    return load_params(data)


def _yaml_error(e: yaml.YAMLError) -> str:
    """`line L, column C: problem` in one line (PyYAML's message spans several)."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    if mark is None:
        return f"invalid YAML: {problem}"
    return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"


def compose(config_dir: str | Path = "conf", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose conf/config.yaml with Hydra overrides (`model=mini`, `a.b=c`) into plain data;
    composition errors (unknown key or group option, bad override syntax, bad YAML in conf/)
    become one-line ConfigErrors."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(str(Path(config_dir).resolve()), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides))
        OmegaConf.resolve(cfg)
    except yaml.YAMLError as e:
        raise ConfigError(f"config in {config_dir}: {_yaml_error(e)}") from None
    except (HydraException, OmegaConfBaseException) as e:
        raise ConfigError(_composition_error(str(e), config_dir)) from None
    return OmegaConf.to_container(cfg)  # type: ignore[return-value]


def _composition_error(message: str, config_dir: str | Path) -> str:
    """Hydra's multi-line composition error as one line naming the mistyped key, group or option
    and the closest valid names."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    first = lines[0] if lines else "composition failed"
    unknown = re.match(r"Could not override '([^']+)'", first)
    if unknown:
        return _unknown_key(unknown.group(1), config_dir)
    option = re.search(r"Could not find '(.+)/([^/']+)'", first)
    if option:
        group, name = option.groups()
        choices = group_options(config_dir).get(group, [])
        if choices:
            return f"unknown option {group}={name} in {config_dir}/: {suggest(name, choices)}"
    missing = re.search(r"config group '([^']+)' does not exist", first)
    if missing:
        name, groups = missing.group(1), group_options(config_dir)
        return f"unknown config group {name} in {config_dir}/: {suggest(name, groups)}"
    detail = [x for x in lines[1:] if not x.startswith(("Config search path", "provider="))]
    return f"config in {config_dir}: " + "; ".join([first, *detail[:6]])


def _unknown_key(path: str, config_dir: str | Path) -> str:
    """`unknown param a.b.c: did you mean ...? allowed under a.b: ...`, from the composed
    defaults: the first part of `path` that is not there is the typo."""
    head = f"unknown param {path}: not in {config_dir}/ (override refused)"
    try:
        node: Any = compose(config_dir)
    except ConfigError:
        return head
    parts = path.split(".")
    for i, part in enumerate(parts):
        where = ".".join(parts[:i])
        if not isinstance(node, dict):
            return f"{head}; {where} is a value, not a section"
        if part not in node:
            names = list(node) + (list(group_options(config_dir)) if i == 0 else [])
            hint = did_you_mean(part, names)
            under = f" under {where}" if where else ""
            return f"unknown param {path}: {hint}allowed{under}: {', '.join(sorted(set(names)))}"
        node = node[part]
    return head


def group_options(config_dir: str | Path) -> dict[str, list[str]]:
    """Config groups under conf/ (`model`, `deepspeed`, ...) and their options (file names)."""
    root = Path(config_dir)
    groups: dict[str, list[str]] = {}
    for option in sorted(root.rglob("*.yaml")):
        group = option.parent.relative_to(root).as_posix()
        if group != ".":
            groups.setdefault(group, []).append(option.stem)
    return groups


def dump_composed(
    out: str | Path, config_dir: str | Path = "conf", overrides: Sequence[str] = ()
) -> None:
    """Write params.yaml as DVC does (OmegaConf's YAML), after validating it."""
    from omegaconf import OmegaConf

    from d2v.atomic import write_text

    data = compose(config_dir, overrides)
    load_params(data)
    write_text(out, OmegaConf.to_yaml(OmegaConf.create(data)))


def fingerprint(*parts: Any) -> str:
    """A short stable hash of configs (dataclasses or plain data)."""
    blob = json.dumps([to_dict(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]

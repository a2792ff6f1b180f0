"""Reading and composing params: `conf/` Hydra groups -> the dict DVC writes to params.yaml.

`compose` is what `dvc exp run -S ...` does with Hydra enabled (dvc.utils.hydra.compose_and_dump),
so `make params` and Optuna trials produce exactly the params a DVC experiment would.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from d2v.config import Params, load_params, to_dict

log = logging.getLogger(__name__)


def read_params(path: str | Path = "params.yaml") -> Params:
    """Load and validate a params file; raises ConfigError naming a bad param."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"params file {path} not found (run `make params` to compose it)")
    return load_params(yaml.safe_load(path.read_text()) or {})


def compose(config_dir: str | Path = "conf", overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Compose conf/config.yaml with Hydra overrides (`model=mini`, `a.b=c`) into plain data."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(Path(config_dir).resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides))
    OmegaConf.resolve(cfg)
    return OmegaConf.to_container(cfg)  # type: ignore[return-value]


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

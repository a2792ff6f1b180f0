"""The whole composed `params.yaml` as typed configs: built from plain data (unknown keys, missing
sections and wrong types refused, naming the param), validated before any compute, and turned back
into plain data for saving and tracking.

Two rules hold for every field, before each section's own ranges: the file says every section
itself (a missing one would silently train on the code defaults, which differ from conf/), and
every number is finite and >= 0 unless its field is declared `signed`. A negative is refused with
its section's own range where a section check refuses it, so the message names the exact range."""

from __future__ import annotations

import contextvars
import dataclasses
import enum
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from d2v.config.ablate import AblateConfig
from d2v.config.base import ConfigError, Modality, check, did_you_mean, refused
from d2v.config.bench import BenchConfig
from d2v.config.data import DataConfig
from d2v.config.downstream import TaskConfig
from d2v.config.pretrain import PretrainConfig
from d2v.config.runtime import DeepSpeedConfig, ModelConfig, TrackingConfig
from d2v.config.sweep import SweepConfig


@dataclass
class Params:
    """The whole composed `params.yaml`."""

    seed: int = 0
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    downstream_workers: int = 0  # processes sharing a task's (init, seed) runs; 0: one per core
    model: ModelConfig = field(default_factory=ModelConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    data: DataConfig = field(default_factory=DataConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: dict[str, TaskConfig] = field(default_factory=dict)
    sweep: dict[str, SweepConfig] = field(default_factory=dict)  # per modality
    bench: BenchConfig = field(default_factory=BenchConfig)
    ablate: dict[str, AblateConfig] = field(default_factory=dict)  # per modality

    def validate(self) -> Params:
        check(
            len(self.seeds) >= 1 and len(set(self.seeds)) == len(self.seeds),
            "seeds",
            self.seeds,
            "a non-empty list of distinct ints",
        )
        check(
            self.downstream_workers >= 0,
            "downstream_workers",
            self.downstream_workers,
            ">= 0 (0: one per CPU core, one on a GPU)",
        )
        self.model.validate("model")
        self.deepspeed.validate("deepspeed")
        self.tracking.validate("tracking")
        self.data.vision.validate("data.vision")
        self.data.speech.validate("data.speech")
        self.data.text.validate("data.text")
        self.pretrain.vision.validate("pretrain.vision", self.model, self.data.vision.image_size)
        self.pretrain.speech.validate("pretrain.speech", self.model)
        self.pretrain.text.validate("pretrain.text", self.model)
        for name, task in self.finetune.items():
            task.validate(f"finetune.{name}")
        for section, studies in (("sweep", self.sweep), ("ablate", self.ablate)):
            for name in studies:
                if name not in Modality.__members__:
                    hint = did_you_mean(name, Modality.__members__)
                    raise ConfigError(
                        f"unknown param {section}.{name}: {hint}allowed keys naming modalities: "
                        + ", ".join(m.value for m in Modality)
                    )
        for name, sweep in self.sweep.items():
            sweep.validate(f"sweep.{name}", self.finetune)
        self.bench.validate("bench")
        for name, ablate in self.ablate.items():
            ablate.validate(f"ablate.{name}", self.model.depth, self.finetune)
        return self


T = TypeVar("T")


def from_dict(cls: type[T], data: Any, path: str = "", complete: bool = True) -> T:
    """Build dataclass `cls` from nested dicts, refusing unknown keys, missing keys and values of
    the wrong type. `complete`: every field must be given; otherwise (the entries of a keyed
    collection such as `finetune.<task>`) a leaf with a default is optional, and sections and
    fields without a default must be given."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid param {path or '<root>'} = {data!r}: allowed a mapping")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    where = f"{path}." if path else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        under = f" under {path}" if path else ""
        raise ConfigError(
            f"unknown param {where}{unknown[0]}: "
            f"{did_you_mean(unknown[0], fields)}allowed{under}: {', '.join(sorted(fields))}"
        )
    for name, f in fields.items():
        required = complete or _is_section(hints[name]) or _no_default(f)
        if name not in data and required:
            raise ConfigError(
                f"missing param {where}{name}: params.yaml must set it "
                "(compose it with `d2v params`; code defaults are not used)"
            )
    kwargs = {
        k: _coerce(hints[k], v, f"{where}{k}", fields[k].metadata.get("signed", False), complete)
        for k, v in data.items()
    }
    return cls(**kwargs)


def _no_default(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _is_section(tp: Any) -> bool:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        tp = args[0]
    return dataclasses.is_dataclass(tp) or typing.get_origin(tp) is dict


# While `load_params` builds, a negative number waits here (path, error) for the sections' own
# checks, which name its exact range (a batch size's ">= 1", a fraction's "(0, 1]"); one that no
# section check refuses is refused after them by the rule below.
_NEGATIVES: contextvars.ContextVar[list[tuple[str, ConfigError]] | None] = contextvars.ContextVar(
    "_NEGATIVES", default=None
)


def _number(value: float, path: str, signed: bool) -> None:
    """The rule every numeric param obeys, whatever its section: finite, and >= 0 unless signed."""
    if not math.isfinite(value):
        raise ConfigError(f"invalid param {path} = {value!r}: allowed a finite number")
    if value < 0 and not signed:
        error = ConfigError(f"invalid param {path} = {value!r}: allowed >= 0")
        negatives = _NEGATIVES.get()
        if negatives is None:
            raise error
        negatives.append((path, error))


def _coerce(tp: Any, value: Any, path: str, signed: bool = False, complete: bool = True) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, path, signed, complete)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path, complete)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            names = [m.value for m in tp]
            raise ConfigError(
                f"invalid param {path} = {value!r}: "
                f"{did_you_mean(value, names)}allowed one of {', '.join(names)}"
            ) from None
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"invalid param {path} = {value!r}: allowed a list")
        return [_coerce(inner, v, f"{path}[{i}]", signed, complete) for i, v in enumerate(value)]
    if origin is dict:
        _, inner = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"invalid param {path} = {value!r}: allowed a mapping")
        # keyed records (tasks, sweep dims) are the user's own: their leaves may take defaults
        return {k: _coerce(inner, v, f"{path}.{k}", signed, False) for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if tp in (int, float, str, bool) and not (
        isinstance(value, tp) and not (tp is int and isinstance(value, bool))
    ):
        raise ConfigError(
            f"invalid param {path} = {value!r}: allowed a value of type {tp.__name__}"
        )
    if tp in (int, float):
        _number(value, path, signed)
    return value


def to_dict(obj: Any) -> Any:
    """Plain-data view of a config (enums as their values), for saving and tracking."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_dict(v) for v in obj]
    return obj


def load_params(data: Any) -> Params:
    """Typed, validated params from the composed dict; raises ConfigError before any compute."""
    if not data:
        raise ConfigError("params are empty: compose params.yaml with `d2v params`")
    negatives: list[tuple[str, ConfigError]] = []
    token = _NEGATIVES.set(negatives)
    try:
        params = from_dict(Params, data)
    finally:
        _NEGATIVES.reset(token)
    if negatives:
        raise _refusal(params, negatives)
    return params.validate()


def _refusal(params: Params, negatives: list[tuple[str, ConfigError]]) -> ConfigError:
    """The error that refuses params holding negatives: a section's own check when it refuses
    one of them (it names the exact range), else the rule that numbers are >= 0."""
    try:
        params.validate()
    except ConfigError as e:
        name, _ = refused(e)
        if any(path == name or path.startswith(f"{name}[") for path, _ in negatives):
            return e
    except Exception:  # a section's check that a negative broke: the rule's error says it
        pass
    return negatives[0][1]

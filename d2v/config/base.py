"""What every config module shares: the error type, enumerated choices, and the check that names
a bad param and its allowed range."""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable
from dataclasses import field
from typing import Any


class ConfigError(ValueError):
    """An invalid param: the message names it and its allowed values."""


class Modality(str, enum.Enum):
    vision = "vision"
    speech = "speech"
    text = "text"


class Sublayer(str, enum.Enum):
    """Where in each block the teacher's layer output is read (paper Table 5)."""

    attn = "attn"  # self-attention output
    ffn = "ffn"  # FFN output before the last residual (paper's choice)
    ffn_res = "ffn_res"  # FFN output plus the last residual (the pre-norm block's output)
    block = "block"  # end of block: that residual stream layer-normed, as a post-norm block ends


class Norm(str, enum.Enum):
    instance = "instance"  # over time, per channel (speech)
    layer = "layer"  # over channels, per time step (vision, text)
    none = "none"


class Precision(str, enum.Enum):
    auto = "auto"  # bf16 where the hardware has it (CUDA with bf16), else fp32
    fp32 = "fp32"
    bf16 = "bf16"


def check(ok: bool, name: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid param {name} = {value!r}: allowed {allowed}")


def refused(e: ConfigError) -> tuple[str, str]:
    """The param and the allowed values that an `invalid param P = V: allowed A` error names
    (`check`'s form); ('', '') for an error of another form."""
    text = str(e)
    if not text.startswith("invalid param "):
        return "", ""
    return text.removeprefix("invalid param ").partition(" = ")[0], text.partition(": allowed ")[2]


def did_you_mean(word: str, names: Iterable[str]) -> str:
    """`did you mean X? ` for a mistyped name (difflib's closest names, at most 3), or ''."""
    close = difflib.get_close_matches(str(word), sorted({str(n) for n in names}), n=3, cutoff=0.6)
    return f"did you mean {' or '.join(close)}? " if close else ""


def suggest(word: str, names: Iterable[str]) -> str:
    """`did you mean X? allowed: a, b, c` (or `allowed: a, b, c` when nothing is close): one line
    that names the valid choices after a mistyped one."""
    names = sorted({str(n) for n in names})
    return f"{did_you_mean(word, names)}allowed: {', '.join(names)}"


def check_limit(value: int | None, name: str) -> None:
    """A smoke-test cap on items read: unset (None) or at least one."""
    check(value is None or value >= 1, name, value, "null (no limit) or >= 1")


def check_budget(cfg: Any, p: str) -> None:
    """The checks every optimizer config shares."""
    check(cfg.steps >= 1, f"{p}.steps", cfg.steps, ">= 1")
    check(cfg.batch_size >= 1, f"{p}.batch_size", cfg.batch_size, ">= 1")
    check(cfg.lr > 0, f"{p}.lr", cfg.lr, "> 0")
    # a warmup as long as the run would end at the peak rate, never decaying: refused
    check(
        0 <= cfg.warmup_steps < cfg.steps,
        f"{p}.warmup_steps",
        cfg.warmup_steps,
        f"[0, steps={cfg.steps}) (a warmup must end before the run does)",
    )
    check(cfg.weight_decay >= 0, f"{p}.weight_decay", cfg.weight_decay, ">= 0")


def signed(default: Any) -> Any:
    """A numeric field that may be negative (every other number in params must be >= 0)."""
    return field(default=default, metadata={"signed": True})

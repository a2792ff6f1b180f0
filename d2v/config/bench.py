"""The bench stage: what it measures, at which model size, for how long."""

from __future__ import annotations

from dataclasses import dataclass, field

from d2v.config.base import check
from d2v.config.method import Method
from d2v.config.runtime import ModelConfig


def _mini() -> ModelConfig:
    """conf/model/mini.yaml: ViT-Tiny width, half its depth."""
    return ModelConfig(name="mini", dim=192, depth=6, heads=3, mlp_ratio=4.0, dropout=0.0)


@dataclass
class BenchConfig:
    methods: list[Method] = field(default_factory=lambda: [Method.v1, Method.v2])
    # throughput, FLOPs, MFU, EMA share and the HF race run at this size (null: `model`);
    # time-to-accuracy runs the pipeline's own `model` and pretraining budgets
    model: ModelConfig | None = field(default_factory=_mini)  # conf: model@bench.model
    warmup_steps: int = 3
    timed_steps: int = 10
    matmul_size: int = 2048  # the peak: a square matmul of this size
    matmul_repeats: int = 10
    bf16: bool = True  # also time each step under bf16 autocast, against the bf16 peak
    hf: bool = True  # race the encoder against HF transformers' Data2Vec model of its shape
    hf_repeats: int = 10
    time_to_accuracy: bool = True  # probe score against wall time, per method
    probes: int = 10  # probe points over each method's run (plus step 0)

    def validate(self, p: str) -> None:
        check(bool(self.methods), f"{p}.methods", self.methods, "a non-empty list of v1, v2")
        if self.model is not None:
            self.model.validate(f"{p}.model")
        check(self.warmup_steps >= 0, f"{p}.warmup_steps", self.warmup_steps, ">= 0")
        check(self.timed_steps >= 1, f"{p}.timed_steps", self.timed_steps, ">= 1")
        check(self.matmul_size >= 64, f"{p}.matmul_size", self.matmul_size, ">= 64")
        check(self.matmul_repeats >= 1, f"{p}.matmul_repeats", self.matmul_repeats, ">= 1")
        check(self.hf_repeats >= 1, f"{p}.hf_repeats", self.hf_repeats, ">= 1")
        check(self.probes >= 1, f"{p}.probes", self.probes, ">= 1")

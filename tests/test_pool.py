"""d2v.pool: runs spread over spawned worker processes compute what they compute in-process,
and come back in the jobs' order."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from d2v.pool import run_all, worker_count


def fit_line(seed: int, steps: int) -> tuple[int, list[float], int]:
    """A seeded least-squares fit; returns (seed, weights, the pid that ran it)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 8, generator=g)
    y = x @ torch.randn(8, 1, generator=g)
    torch.manual_seed(seed)
    model = torch.nn.Linear(8, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.05)
    for _ in range(steps):
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return seed, model.weight.detach().flatten().tolist(), os.getpid()


def test_workers_compute_what_one_process_computes_in_job_order() -> None:
    jobs = [(seed, 30) for seed in (3, 1, 2, 0)]
    here = run_all(fit_line, jobs, workers=1)
    spread = run_all(fit_line, jobs, workers=2)
    assert [r[0] for r in spread] == [3, 1, 2, 0]
    assert {r[2] for r in here} == {os.getpid()}
    assert os.getpid() not in {r[2] for r in spread}
    for (_, a, _), (_, b, _) in zip(here, spread, strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_worker_count() -> None:
    assert worker_count(4, 1) == 1  # one job: no pool
    assert worker_count(3, 6) == 3
    assert worker_count(8, 6) == 6  # never more workers than jobs
    if not torch.cuda.is_available():
        assert worker_count(0, 6) == min(6, os.cpu_count() or 1)


def mark_or_fail(marks: str, i: int) -> int:
    """Job i: the first raises at once; the others leave a mark, then take a second."""
    if i == 0:
        raise ValueError("job 0 failed")
    (Path(marks) / str(i)).touch()
    time.sleep(1.0)
    return i


def test_a_failing_run_stops_the_runs_not_yet_started(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="job 0 failed"):
        run_all(mark_or_fail, [(str(tmp_path), i) for i in range(10)], 2)
    # the runs the two workers hold and the executor's call queue (workers + 1 items, already
    # handed over and not cancellable) may finish: at most 2 + 3 marks; waiting for all nine
    # (the old behaviour) would leave nine
    assert len(list(tmp_path.iterdir())) <= 5

"""Independent runs (a downstream task's (init, seed) pairs) spread over worker processes.

A micro encoder's matmuls are too small to keep two cores busy from one process: on 2 CPU cores,
two one-thread processes step 1.1x (speech CTC) to 1.5x (text, images) faster than one
two-thread process (interleaved A/B), and `make run`'s fine-tuning and evaluation ran ~1.3x
faster. So on CPU the runs go to `workers` spawned processes that split the cores' threads; on a
GPU, or with one worker, they run in this process, one after another.

Each run is a pure function of its arguments (seeded inside), so which worker runs it does not
change what it computes beyond float summation order. Results come back in the jobs' order. A
run that raises stops the rest: the runs not yet started are cancelled and its error is raised.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Any, TypeVar

import torch

log = logging.getLogger(__name__)

R = TypeVar("R")


def worker_count(requested: int, jobs: int) -> int:
    """Workers for `jobs` runs: `requested` if > 0, else one per CPU core (one on a GPU)."""
    if jobs <= 1:
        return 1
    if requested > 0:
        return min(requested, jobs)
    if torch.cuda.is_available():
        return 1
    return max(1, min(jobs, os.cpu_count() or 1))


def _init_worker(threads: int) -> None:
    from d2v.logs import setup_logging

    setup_logging()
    torch.set_num_threads(threads)


def run_all(fn: Callable[..., R], jobs: Sequence[tuple[Any, ...]], workers: int) -> list[R]:
    """[fn(*job) for job in jobs], over `workers` processes when > 1 (fn and jobs picklable)."""
    if workers <= 1:
        return [fn(*job) for job in jobs]
    threads = max(1, torch.get_num_threads() // workers)
    log.info("%d runs over %d worker processes, %d thread(s) each", len(jobs), workers, threads)
    # spawn, not fork: a forked child of a process whose OpenMP pool has run can deadlock
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, _init_worker, (threads,)) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and f.exception() is not None]
        if failed:  # the stage stops now: runs not yet started never start
            pool.shutdown(wait=True, cancel_futures=True)
            failed[0].result()
        return [f.result() for f in futures]

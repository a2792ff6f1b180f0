"""Worker pools for data preparation: forked processes, results in order, bounded memory."""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from typing import Any


def process_pool(
    workers: int,
) -> concurrent.futures.ProcessPoolExecutor | contextlib.nullcontext[None]:
    if workers <= 1:
        return contextlib.nullcontext(None)
    # fork (as torch's DataLoader on Linux): spawn would re-import the caller's main module, which
    # breaks scripts without a `__main__` guard. The workers are forked now, before any progress
    # bar starts tqdm's monitor thread, so no thread's lock is copied into them mid-use.
    pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("fork")
    )
    pool.submit(int).result()
    return pool


def ordered_map(
    pool: concurrent.futures.Executor | None, fn: Callable, items: Iterable, window: int
) -> Iterator[Any]:
    """`map(fn, items)` in order, keeping at most `window` tasks in flight (bounded memory)."""
    if pool is None:
        yield from (fn(*item) for item in items)
        return
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, *item))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        for future in pending:
            future.cancel()

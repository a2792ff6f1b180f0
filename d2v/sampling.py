"""Data order as a pure function of (seed, step): resumable and the same on any number of ranks."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(n: int, batch_size: int, step: int, seed: int) -> np.ndarray:
    """Indices of the global batch at `step`: epochs of shuffled data, the last partial batch
    of each epoch dropped. (batch_size,) int64."""
    if batch_size > n:
        raise ValueError(f"batch size {batch_size} exceeds the {n} examples")
    per_epoch = n // batch_size
    epoch, i = divmod(step, per_epoch)
    return _permutation(n, seed, epoch)[i * batch_size : (i + 1) * batch_size]


def rank_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """This rank's contiguous share of a global batch."""
    if batch_size % world_size:
        raise ValueError(f"global batch size {batch_size} is not divisible by {world_size} ranks")
    per = batch_size // world_size
    return slice(rank * per, (rank + 1) * per)


def step_seed(seed: int, step: int) -> int:
    """A distinct generator seed per (run seed, step), for masks and dropout."""
    return (seed * 1_000_003 + step) % (2**63)


def length_bucketed_batches(
    lengths: np.ndarray, batch_size: int, seed: int, epoch: int, bucket: int = 32
) -> np.ndarray:
    """One epoch of batches of similar lengths, as a (n // batch_size, batch_size) array.

    The shuffled examples are cut into chunks of `bucket` batches, each chunk is sorted by length
    and cut into batches, and the batches are shuffled: every batch holds neighbours in length
    (little padding or cropping) while the data order stays random. Remainders are dropped.
    """
    n = len(lengths)
    if batch_size > n:
        raise ValueError(f"batch size {batch_size} exceeds the {n} examples")
    rng = np.random.default_rng([seed, epoch, 1])
    order = rng.permutation(n)
    chunk = batch_size * bucket
    parts = [order[i : i + chunk] for i in range(0, n, chunk)]
    order = np.concatenate([p[np.argsort(lengths[p], kind="stable")] for p in parts])
    per_epoch = n // batch_size
    batches = order[: per_epoch * batch_size].reshape(per_epoch, batch_size)
    return batches[rng.permutation(per_epoch)]

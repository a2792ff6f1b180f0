"""Fine-tuning passes: each epoch draws a new batch order from the run's seed (the whole sequence
of epochs fixed by it), covers the same examples, and evaluation passes keep their order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from d2v.modalities import downstream_task
from tests.helpers import tiny_params


def _epoch(batches) -> list[bytes]:
    """One pass as a list of batch fingerprints (the batch's labels and inputs, as bytes)."""
    out = []
    for inputs, labels in batches:
        x = inputs.wave if hasattr(inputs, "wave") else inputs
        out.append(labels.numpy().tobytes() + x.numpy().tobytes())
    return out


def _check_passes(task, subset: np.ndarray, batch_size: int, same_batches: bool) -> None:
    train = task.train_pass(subset, batch_size, 3)
    epochs = [_epoch(train) for _ in range(3)]
    assert len(set(map(tuple, epochs))) == 3, "every epoch repeats one batch order"
    again = task.train_pass(subset, batch_size, 3)
    assert [_epoch(again) for _ in range(3)] == epochs, "the seed does not fix the epochs"
    assert _epoch(task.train_pass(subset, batch_size, 4)) != epochs[0]
    if same_batches:  # fixed length buckets, reordered
        assert all(Counter(e) == Counter(epochs[0]) for e in epochs)
    evaluation = task.eval_pass(batch_size)
    assert _epoch(evaluation) == _epoch(evaluation)


def test_speech_epochs_reorder_the_length_buckets(prepared_speech: Path) -> None:
    params = tiny_params()
    task = downstream_task(params, "librispeech", prepared_speech)
    _check_passes(task, np.arange(len(task.train_labels)), 4, same_batches=True)


def test_text_epochs_draw_a_new_permutation(prepared_text: Path) -> None:
    params = tiny_params()
    task = downstream_task(params, "sst2", prepared_text)
    subset = np.arange(min(64, len(task.train_labels)))
    _check_passes(task, subset, 8, same_batches=False)
    train = task.train_pass(subset, 8, 3)
    for _ in range(2):  # each epoch holds every example once
        labels = np.concatenate([lab.numpy() for _, lab in train])
        assert sorted(labels.tolist()) == sorted(task.train_labels[subset].tolist())

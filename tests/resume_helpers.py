"""Stopping a run midway, as Ctrl-C would, to test that resuming it is exact."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def pretraining_stopped_at(monkeypatch: pytest.MonkeyPatch, step: int) -> Iterator[None]:
    """Inside the block the encoder pretraining loop raises KeyboardInterrupt when it reaches ``step`` (after the
    checkpoints before it were saved); the block must end with it. Afterwards the loop runs normally again."""
    from ecg_bench.models.encoders import pretrain_loop

    real = pretrain_loop.batch_indices

    def stop(n: int, batch_size: int, at: int, seed: int):
        if at == step:
            raise KeyboardInterrupt
        return real(n, batch_size, at, seed)

    monkeypatch.setattr(pretrain_loop, "batch_indices", stop)
    try:
        with pytest.raises(KeyboardInterrupt):
            yield
    finally:
        monkeypatch.setattr(pretrain_loop, "batch_indices", real)

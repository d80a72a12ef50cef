"""Conversation items joined to their ECG segments, as a torch Dataset (no chat formatting here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ecg_bench.data.conversations import validate_item
from ecg_bench.data.store import SegmentStore


class ConversationDataset(Dataset):
    """``ds[i]`` -> ``{"id", "messages", "ecg": tensor [n_ecg, *representation.shape(L)], "item"}``.

    ``representation`` turns one segment ``[12, L]`` into the model input: a Representation instance
    (``ecg_bench.representations``; this layer does not import it, so the caller builds it).
    Items are validated once here; ``__getitem__`` only reads the memory-mapped store.
    """

    def __init__(
        self, items: Sequence[dict[str, Any]], store: SegmentStore, representation: Callable[[np.ndarray], torch.Tensor]
    ):
        self.items = list(items)
        self.store = store
        if isinstance(representation, str) or not callable(representation):
            raise TypeError(
                f"ConversationDataset needs a representation instance (e.g. REPRESENTATIONS.get({representation!r})()), "
                f"got {representation!r}"
            )
        self.representation = representation
        for item in self.items:
            validate_item(item, len(store))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = self.items[i]
        return {"id": item["id"], "messages": item["messages"], "ecg": self.represent(self.signals(i)), "item": item}

    def signals(self, i: int) -> np.ndarray:
        """Item ``i``'s store segments, float32 ``[n_ecg, 12, L]`` in mV (what evaluation conditions act on)."""
        return self.store.signals(self.items[i]["segment_ids"])

    def represent(self, segments: np.ndarray) -> torch.Tensor:
        """Model input of a stack of segments: ``[n_ecg, *representation.shape(L)]``."""
        return self.representation.represent(segments)

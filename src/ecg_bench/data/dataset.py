"""Conversation items joined to their ECG segments, as a torch Dataset (no chat formatting here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ecg_bench.data.conversations import validate_item
from ecg_bench.data.store import SegmentStore
from ecg_bench.representations.base import REPRESENTATIONS, Representation


class ConversationDataset(Dataset):
    """``ds[i]`` -> ``{"id", "messages", "ecg": tensor [n_ecg, *representation.shape(L)], "item"}``.

    ``representation`` is a Representation instance or a registered name (built with no options).
    Items are validated once here; ``__getitem__`` only reads the memory-mapped store.
    """

    def __init__(self, items: Sequence[dict[str, Any]], store: SegmentStore, representation: Representation | str):
        self.items = list(items)
        self.store = store
        self.representation = REPRESENTATIONS.get(representation)() if isinstance(representation, str) else representation
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

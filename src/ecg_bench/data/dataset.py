"""Conversation items joined to their ECG segments, as a torch Dataset (no chat formatting here)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
        segments = self.store.signals(item["segment_ids"])
        ecg = torch.stack([self.representation(s) for s in segments])
        return {"id": item["id"], "messages": item["messages"], "ecg": ecg, "item": item}

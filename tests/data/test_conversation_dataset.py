from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from ecg_bench.config import DataConfig
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.data.mapped.synthetic_qa import synthetic_qa
from ecg_bench.errors import DataError
from ecg_bench.representations.signal import SignalRepresentation
from config_helpers import data_config


def test_items_joined_to_segments(store):
    items = synthetic_qa(store, data_config(seed=0))
    two = {
        **items[0],
        "id": "two-ecgs",
        "segment_ids": [4, 9],
        "messages": [
            {"role": "user", "content": "<ecg>\n<ecg>\nSame patient?"},
            {"role": "assistant", "content": "yes"},
        ],
    }
    ds = ConversationDataset(items[:5] + [two], store, SignalRepresentation())
    assert len(ds) == 6
    x = ds[0]
    assert set(x) == {"id", "messages", "ecg", "item"} and x["id"] == items[0]["id"]
    assert x["ecg"].shape == (1, 12, store.segment_len) and x["ecg"].dtype == torch.float32
    seg = torch.from_numpy(store.signal(items[0]["segment_ids"][0]))
    torch.testing.assert_close(x["ecg"][0], (seg - seg.mean(1, keepdim=True)).clamp(-5, 5), rtol=1e-4, atol=1e-4)
    assert ds[5]["ecg"].shape == (2, 12, store.segment_len)
    loader = DataLoader(ds, batch_size=2, collate_fn=list)
    assert sum(len(b) for b in loader) == 6


def test_representation_instance_and_bad_items(store):
    items = synthetic_qa(store, data_config(seed=0))[:3]
    assert ConversationDataset(items, store, SignalRepresentation())[1]["ecg"].shape == (1, 12, store.segment_len)
    # the data layer does not look names up in the representations registry (layer contract): a name is refused
    with pytest.raises(TypeError, match="representation instance"):
        ConversationDataset(items, store, "signal")
    bad = {**items[0], "segment_ids": [len(store)]}
    with pytest.raises(DataError, match="segment_ids"):
        ConversationDataset([bad], store, SignalRepresentation())

"""Fixtures for the ECG-Byte tests: a tiny synthetic store, a tokenizer trained on it, real PTB-XL records."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_bench.data.sources.synthetic import generate_records
from ecg_bench.data.store import SegmentStore, build_store
from ecg_bench.ecg_byte import ECGByteTokenizer, train_tokenizer

PTBXL_IDS = [f"{i:05d}" for i in range(6000, 6010)]


@pytest.fixture(scope="session")
def byte_store(tmp_path_factory) -> SegmentStore:
    """10 synthetic patients, 2 s segments at 250 Hz (12 x 500 samples)."""
    records = list(generate_records(10, 1, seed=5))
    return build_store(records, tmp_path_factory.mktemp("ecg_byte") / "store", "synthetic", 250, 500)


@pytest.fixture(scope="session")
def byte_tokenizer(byte_store) -> ECGByteTokenizer:
    return train_tokenizer(byte_store, vocab_size=200, num_samples=0, seed=0)


@pytest.fixture(scope="session")
def ptbxl_signals(shared_data) -> list[np.ndarray]:
    """The 10 real PTB-XL records as float32 [12, 5000] mV (read with wfdb directly)."""
    import wfdb

    out = []
    for rid in PTBXL_IDS:
        sig, fields = wfdb.rdsamp(str(shared_data / "ptbxl" / "records500" / "06000" / f"{rid}_hr"))
        assert fields["units"][0] == "mV" and sig.shape == (5000, 12)
        out.append(sig.T.astype(np.float32))
    return out


@pytest.fixture(scope="session")
def legacy_pickle(shared_data):
    return shared_data / "ecg-bench-artifacts" / "ecg_byte_tokenizer_1000_25.pkl"

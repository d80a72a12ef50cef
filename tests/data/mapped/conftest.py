"""Stores the mapped-dataset tests join to: the 10 real PTB-XL records, and small synthetic stores
whose record ids follow the real datasets' conventions (PTB-XL ecg_id, MIMIC study_id, ...)."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_bench.config import DataConfig
from ecg_bench.data.record import LEADS, ECGRecord
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.store import SegmentStore, build_store
from config_helpers import data_config

FS = 250
SEGMENT_LEN = 500  # 2 s: a 10 s record gives 5 segments


@pytest.fixture(scope="session")
def ptbxl_store(shared_data, tmp_path_factory) -> SegmentStore:
    """The 10 real PTB-XL records (ecg_id 6000-6009) read by the ptbxl source: 5 segments of 2 s each."""
    records = list(SOURCES.get("ptbxl")(data_config(source="ptbxl", data_dir=str(shared_data / "ptbxl"))))
    return build_store(records, tmp_path_factory.mktemp("ptbxl") / "store", "ptbxl", FS, SEGMENT_LEN)


@pytest.fixture()
def make_store(tmp_path):
    """``make_store(dataset, [(record_id, patient_id), ...], seconds=4.0)``: a store named ``dataset`` of
    smooth random 12-lead signals (4 s = 2 segments per record)."""

    def make(dataset: str, records: list[tuple[str, str]], seconds: float = 4.0) -> SegmentStore:
        rng = np.random.default_rng(0)
        n = int(seconds * FS)
        recs = [
            ECGRecord(rid, pid, np.cumsum(rng.normal(0, 0.01, (len(LEADS), n)), axis=1).astype(np.float32), FS)
            for rid, pid in records
        ]
        return build_store(recs, tmp_path / f"store-{dataset}", dataset, FS, SEGMENT_LEN)

    return make

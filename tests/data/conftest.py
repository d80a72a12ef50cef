"""Synthetic records and a built store shared by the data tests (built once per session)."""

from __future__ import annotations

import pytest

from ecg_bench.config import DataConfig
from ecg_bench.data.sources.synthetic import generate_records
from ecg_bench.data.store import SegmentStore, build_store
from config_helpers import data_config

NUM_PATIENTS = 30
RECORDS_PER_PATIENT = 2
FS = 250
SEGMENT_LEN = 500  # 2 s at 250 Hz


@pytest.fixture(scope="session")
def records():
    return list(generate_records(NUM_PATIENTS, RECORDS_PER_PATIENT, seed=0))


@pytest.fixture(scope="session")
def store(records, tmp_path_factory) -> SegmentStore:
    return build_store(records, tmp_path_factory.mktemp("store") / "synthetic", "synthetic", FS, SEGMENT_LEN)


@pytest.fixture()
def data_cfg() -> DataConfig:
    return data_config(num_patients=NUM_PATIENTS, records_per_patient=RECORDS_PER_PATIENT, target_fs=FS, seed=0)

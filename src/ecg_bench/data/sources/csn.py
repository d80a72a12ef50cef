"""CSN: the Chapman University / Shaoxing People's Hospital (and Ningbo) 12-lead ECG database.

Download "A large scale 12-lead electrocardiogram database for arrhythmia study"
(https://physionet.org/content/ecg-arrhythmia/1.0.0/); point ``data_dir`` at the download folder or
its ``WFDBRecords``. Layout (the CinC layout, two folder levels)::

    WFDBRecords/01/010/JS00001.hea, JS00001.mat, ..., RECORDS
    WFDBRecords/46/469/JS46xxx...

45,152 records, 12 leads, 500 Hz, 10 s, 1000 ADC units/mV (MATLAB v4 ``val``), SNOMED-CT ``# Dx``
codes. No patient ids are published: each record is its own patient (record_id = patient_id = stem).
"""

from __future__ import annotations

from dataclasses import dataclass

from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.sources.cinc import CinCOptions, CinCSource


@dataclass
class CSNOptions(CinCOptions):
    """CSN (CinC layout): see CinCOptions."""


@SOURCES.register("csn", options=CSNOptions)
class CSN(CinCSource):
    """CSN records (``JS00001`` ...) found anywhere under ``data.data_dir``; see CinCSource."""

    options_type = CSNOptions

    dataset = "CSN"

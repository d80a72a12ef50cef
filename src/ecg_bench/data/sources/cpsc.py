"""CPSC 2018 (China Physiological Signal Challenge 2018) in the PhysioNet/CinC Challenge 2020/2021 layout.

Download: the ``cpsc_2018`` folder of the CinC 2021 training data
(https://physionet.org/content/challenge-2021/1.0.3/training/cpsc_2018/), or ``WFDB_CPSC2018.tar.gz``
of the CinC 2020 challenge. Layout, records directly in ``data_dir`` or in ``g1`` ... ``g7``::

    cpsc_2018/g1/A0001.hea, A0001.mat, ..., RECORDS
    cpsc_2018/g2/...

6,877 records, 12 leads, 500 Hz, 6-60 s, 1000 ADC units/mV, labels as SNOMED-CT ``#Dx`` codes.
No patient ids are published: each record is its own patient (record_id = patient_id = file stem).
"""

from __future__ import annotations

from dataclasses import dataclass

from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.sources.cinc import CinCOptions, CinCSource


@dataclass
class CPSC2018Options(CinCOptions):
    """CPSC2018 (CinC layout): see CinCOptions."""


@SOURCES.register("cpsc2018", options=CPSC2018Options)
class CPSC2018(CinCSource):
    """CPSC 2018 records (``A0001`` ... ``A6877``) found anywhere under ``data.data_dir``; see CinCSource."""

    options_type = CPSC2018Options

    dataset = "CPSC 2018"

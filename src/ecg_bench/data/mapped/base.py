"""The mapped-dataset registry. A mapped dataset joins conversations to segment ids:

    @MAPPED.register("myqa")
    def myqa(store: SegmentStore, cfg: DataConfig) -> list[dict]: ...

It returns conversation items in the format of ``ecg_bench.data.conversations`` (validated there by
``validate_item``), one or more per segment, each carrying the segment's patient_id so that folds
stay patient-disjoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from collections.abc import Callable
from typing import Any

from ecg_bench.config import DataConfig, MappedOptions
from ecg_bench.data.store import SegmentStore
from ecg_bench.registry import Registry

MappedDataset = Callable[[SegmentStore, DataConfig], list[dict[str, Any]]]

MAPPED: Registry[MappedDataset] = Registry("mapped dataset", options=MappedOptions, package="ecg_bench.data.mapped", listing="mapped")


def mapped_options(cfg: DataConfig, cls: type) -> Any:
    """``cfg.mapped`` when it holds options of ``cls``, else ``cls``'s defaults (a mapper called directly)."""
    return cfg.mapped if isinstance(cfg.mapped, cls) else cls()

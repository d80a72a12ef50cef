"""The source registry. A source turns a raw dataset into ECGRecords:

    @SOURCES.register("mydataset")
    def mydataset(cfg: DataConfig) -> Iterator[ECGRecord]: ...

Sources yield records as read (any lead order, any sampling rate, NaNs allowed); the segment store
does the preprocessing. A record a source cannot read should be skipped there with a logged reason
rather than stopping the whole dataset.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator

from ecg_bench.config import DataConfig
from ecg_bench.data.record import ECGRecord
from ecg_bench.registry import Registry

Source = Callable[[DataConfig], Iterator[ECGRecord]]

SOURCES: Registry[Source] = Registry("source")

# Modules whose import registers a built-in source. Imported here so that importing this module is
# enough for ``SOURCES.get(name)`` to see every built-in name.
_BUILTIN_MODULES = ("ecg_bench.data.sources.synthetic",)

for _mod in _BUILTIN_MODULES:
    importlib.import_module(_mod)

"""``ecg-bench pretrain NAME``: run a registered pretrainer (``PRETRAINERS``) with NAME's own options.

Each pretrainer declares its options as a dataclass registered with it (a ``config.PretrainerOptions``);
draccus turns its fields into flags (``--field_name``, a nested dataclass field as ``--x.field``, help
from the field's docstring), so ``ecg-bench pretrain NAME --help`` shows only NAME's options and
``ecg-bench pretrain --help`` lists the pretrainers. Values are decoded and checked by ``config.build``
like every config value; ``field(metadata={"required": True})`` makes an option required.
"""

from __future__ import annotations

from typing import Any

from ecg_bench.models.encoders import PRETRAINERS


def run(name: str, options: Any) -> str:
    """Run pretrainer ``name`` with ``options`` (an instance of its options dataclass); returns its summary."""
    return PRETRAINERS.get(name).run(options)

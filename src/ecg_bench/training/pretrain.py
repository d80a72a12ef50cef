"""``ecg-bench pretrain NAME``: run a registered pretrainer (``PRETRAINERS``) with NAME's own options.

Each pretrainer declares its options as a dataclass registered with it (a ``config.PretrainerOptions``);
draccus turns its fields into flags (``--field_name``, a nested dataclass field as ``--x.field``, help
from the field's docstring), so ``ecg-bench pretrain NAME --help`` shows only NAME's options and
``ecg-bench pretrain --help`` lists the pretrainers. Values are decoded and checked by ``config.build``
like every config value; ``field(metadata={"required": True})`` makes an option required.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from ecg_bench.config import build
from ecg_bench.errors import ConfigError, UnknownNameError
from ecg_bench.flags import parse_flags
from ecg_bench.models.encoders import PRETRAINERS


def _usage() -> str:
    lines = ["usage: ecg-bench pretrain NAME [--OPTION VALUE ...]", "", "Pretrain an encoder. NAME is one of:"]
    for name in PRETRAINERS.names():
        lines.append(f"  {name:<12} {PRETRAINERS.get(name).description}")
    lines.append("\n`ecg-bench pretrain NAME --help` shows NAME's options.")
    return "\n".join(lines)


def parse_pretrain(argv: list[str]) -> tuple[str, Any]:
    """``(name, options)`` from ``pretrain NAME [flags]``; ``--help`` prints the pretrainers (or NAME's options)."""
    if not argv or argv[0].startswith("-"):
        print(_usage())
        if not argv:
            raise ConfigError(["pretrain needs a NAME: one of " + ", ".join(PRETRAINERS.names())])
        sys.exit(0)
    name, rest = argv[0], argv[1:]
    if name not in PRETRAINERS:
        raise UnknownNameError("pretrainer", name, PRETRAINERS.names())
    spec = PRETRAINERS.get(name)
    config, overrides = parse_flags(spec.options, rest, prog=f"ecg-bench pretrain {name}", description=spec.description)
    opts = build(spec.options(), config or None, overrides, checks=[lambda o: o.problems()])
    missing = [f"--{f.name}" for f in dataclasses.fields(opts) if f.metadata.get("required") and not getattr(opts, f.name)]
    if missing:
        raise ConfigError([f"pretrain {name}: required: {', '.join(missing)}"])
    return name, opts


def run(name: str, options: Any) -> str:
    """Run pretrainer ``name`` with ``options`` (an instance of its options dataclass); returns its summary."""
    return PRETRAINERS.get(name).run(options)

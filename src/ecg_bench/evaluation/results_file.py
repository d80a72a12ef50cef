"""``results.json``: one run's evaluation, written once by the pipeline and read by the report, the sweep and hub staging.

A number that is not defined for a run (NaN, infinity) is written as null, which the report shows as missing.
It carries ``format_version`` (``safe_files.FORMAT_KEY``); a file without it, or of another version, is refused
naming the file, the version found and the one this ecg-bench reads. It is read with the structure limits of
``ecg_bench.limits`` (size, nesting, node count), so a hostile file is a message, never a RecursionError.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ecg_bench.errors import DataError
from ecg_bench.limits import load_json_file
from ecg_bench.logging_utils import get_logger
from ecg_bench.safe_files import FORMAT_KEY, check_format_version

log = get_logger(__name__)

RESULTS = "results.json"
FORMAT_VERSION = 1
"""The one results.json format this ecg-bench writes and reads."""


def write_results(results: dict[str, Any], path: str | Path) -> Path:
    """Write ``results`` with its format version, atomically (a reader sees the old file or the whole new one)."""
    path = Path(path)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(_finite_or_null({FORMAT_KEY: FORMAT_VERSION, **results}), indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)
    log.info("wrote %s", path)
    return path


def _finite_or_null(x: Any) -> Any:
    """NaN and infinity (a metric not defined for a run, e.g. a CI of one patient) as null: JSON has no NaN."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _finite_or_null(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite_or_null(v) for v in x]
    return x


def read_results(path: str | Path) -> dict[str, Any]:
    """A results.json: bounded, of this format version, an object with ``config`` and ``conditions`` objects."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file not found: {path}")
    doc = load_json_file(path, "results.json of a finished run")
    check_format_version(doc, path, FORMAT_VERSION, "a results.json")
    missing = [k for k in ("config", "conditions") if not isinstance(doc.get(k), dict)]
    if missing:
        raise DataError(f"{path}: no {' or '.join(missing)} object; expected the results.json written by ecg-bench run")
    return doc

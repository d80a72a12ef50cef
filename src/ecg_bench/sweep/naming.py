"""Cell folder names: stable, filesystem-safe, unique, made of the cell's values (``encoder=conv1d__fold=0``)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

MAX_NAME = 140
"""Longest cell name kept as it is; a longer one is cut and given a hash of its values."""


def _label(value: Any) -> str:
    """A value as a cell name shows it: a component by its type and options (``spectral-hidden=64``), a section's
    values one after another (``llava-signal-conv1d``), a path or hub id by its last part."""
    if isinstance(value, Mapping):
        if "type" in value:
            return "-".join([str(value["type"]), *(f"{k}={_label(v)}" for k, v in value.items() if k != "type")])
        return "-".join(_label(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "+".join(_label(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str) and "/" in value.rstrip("/"):
        return value.rstrip("/").rsplit("/", 1)[1]
    return str(value)


def _short_keys(keys: Sequence[str]) -> dict[str, str]:
    """Each dotted key by its last part, or by more of it where the last parts of two keys are the same."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            short = ".".join(parts[-n:])
            if sum(1 for o in keys if o == short or o.endswith("." + short)) == 1:
                break
        out[k] = short
    return out


def _digest(value: Any, n: int = 8) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:n]


def cell_names(assignments: Sequence[Mapping[str, Any]]) -> list[str]:
    """A stable, filesystem-safe, unique folder name per assignment, made of its values (``encoder=conv1d__fold=0``)."""
    keys = list(dict.fromkeys(k for a in assignments for k in a))
    short = _short_keys(keys)
    names = []
    for a in assignments:
        name = "__".join(f"{short[k]}={_label(v)}" for k, v in a.items()) or "base"
        name = re.sub(r"[^A-Za-z0-9._=+-]+", "_", name).lstrip(".") or "cell"
        if len(name) > MAX_NAME:
            name = f"{name[:MAX_NAME]}-{_digest(a)}"
        names.append(name)
    counts = {n: names.count(n) for n in names}
    return [f"{n}-{_digest(a)}" if counts[n] > 1 else n for n, a in zip(names, assignments)]

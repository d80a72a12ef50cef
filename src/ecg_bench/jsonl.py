"""JSON Lines files: atomic writes, and reads whose errors name the file and line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ecg_bench.errors import DataError


def save_jsonl(items: Iterable[dict[str, Any]], path: str | Path) -> Path:
    """Write one JSON object per line, atomically (temp file + os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            for item in items:
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def load_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file of objects; a bad line raises DataError with its file and line number.
    A line nested deeper than Python's parser can recurse is a DataError too, never a RecursionError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSONL file not found: {path}")
    out = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
            except RecursionError:  # json's C parser recurses per nesting level; a hostile line nests 200,000 deep
                raise DataError(f"{path}:{lineno}: JSON nested too deeply to parse") from None
            if not isinstance(obj, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(obj).__name__}")
            out.append(obj)
    return out

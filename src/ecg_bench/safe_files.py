"""The one way ECG-Bench reads weight files and small JSON documents it did not just write itself.

A file from someone else (a received checkpoint, a truncated download) may be garbage, cut short, claim a
header of 10^12 bytes, or hold NaN weights. Each case is refused with a :class:`DataError` that names the
file and what was expected, before anything large is allocated.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecg_bench.errors import DataError
from ecg_bench.limits import load_json_file

if TYPE_CHECKING:
    import torch

# safetensors itself refuses headers above 100 MB; a real checkpoint's header is a few kB.
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
# A JSON document of ours (config, trainer state, descriptions) is kB; refuse anything absurd before reading it.
MAX_JSON_BYTES = 64 * 1024 * 1024


def check_safetensors_header(path: str | Path) -> dict[str, Any]:
    """Validate the framing of a safetensors file from its size and header alone; return the parsed header.

    Layout: an 8-byte little-endian header length N, N bytes of JSON, then the tensor data. N must fit in
    the file and every tensor's byte range must lie inside the data, so a cut or forged file is refused
    without reading (or allocating) what its header claims.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"safetensors file not found: {path}")
    size = path.stat().st_size
    expected = "expected a safetensors file (8-byte header length, JSON header, tensor data)"
    if size < 8:
        raise DataError(f"{path}: {size} bytes, too short to be a safetensors file; {expected}")
    with path.open("rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > size - 8 or n > MAX_SAFETENSORS_HEADER:
            raise DataError(
                f"{path}: header claims {n} bytes but the file has {size - 8} after the length field "
                f"(truncated or not a safetensors file); {expected}"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise DataError(f"{path}: the safetensors header is not valid JSON ({e}); {expected}") from None
    if not isinstance(header, dict):
        raise DataError(f"{path}: the safetensors header is a {type(header).__name__}, not a JSON object; {expected}")
    data_len = size - 8 - n
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        ok = isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and o >= 0 for o in offsets)
        if not ok or offsets[0] > offsets[1]:
            raise DataError(f"{path}: tensor {name!r} has no valid data_offsets in the header; {expected}")
        if offsets[1] > data_len:
            raise DataError(
                f"{path}: tensor {name!r} ends at byte {offsets[1]} of the data but the file holds {data_len} (truncated file)"
            )
    return header


def load_safetensors(path: str | Path, *, finite: bool = True) -> dict[str, torch.Tensor]:
    """Read every tensor of a safetensors file after :func:`check_safetensors_header`.

    Errors of the safetensors library become a :class:`DataError` naming the file. With ``finite`` (the
    default), a floating-point tensor holding NaN or infinity is refused, naming the tensor.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    check_safetensors_header(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise DataError(f"{path}: not a readable safetensors file ({e})") from None
    if finite:
        check_finite(tensors, path)
    return tensors


def check_finite(tensors: dict[str, torch.Tensor], where: str | Path) -> None:
    """Refuse NaN/infinite values in floating-point tensors, naming the first bad tensor and the count."""
    import torch

    for name, t in tensors.items():
        if t.is_floating_point() or t.is_complex():
            bad = int((~torch.isfinite(t)).sum())
            if bad:
                raise DataError(f"{where}: tensor {name!r} holds {bad} NaN/infinite value(s) of {t.numel()}; "
                                "the weights are corrupt (a diverged run or a damaged file)")  # fmt: skip


def read_json_file(path: str | Path, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file we wrote (config, trainer state, RNG state, ...): ``ecg_bench.limits.load_json_file``
    (size, nesting and node count bounded; bad syntax, encoding or NaN literals a DataError naming the file),
    FileNotFoundError naming it when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return load_json_file(path, what, max_bytes=max_bytes)


FORMAT_KEY = "format_version"
"""The key of the format version in every file ecg-bench writes for later reading (checkpoint manifest.json, a
segment store's meta.json, results.json)."""


def check_format_version(doc: Any, path: str | Path, expected: int, what: str) -> None:
    """Refuse a document whose ``format_version`` is missing or not ``expected``, naming the file, the version found
    and the one this ecg-bench reads (there is one format per file kind: nothing older is migrated)."""
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object ({what}), got {type(doc).__name__}")
    found = doc.get(FORMAT_KEY)
    if found == expected and not isinstance(found, bool):
        return
    got = "no format_version" if FORMAT_KEY not in doc else f"format_version {found!r}"[:80]
    raise DataError(f"{path}: {what} of {got}; this ecg-bench reads format_version {expected} only (write it again with "
                    "this version of ecg-bench)")

"""The one way ECG-Bench reads weight files and small JSON documents it did not just write itself.

A file from someone else (a received checkpoint, a truncated download) may be garbage, cut short, claim a
header of 10^12 bytes, or hold NaN weights. Each case is refused with a :class:`DataError` that names the
file and what was expected, before anything large is allocated.
"""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ecg_bench.errors import DataError
from ecg_bench.limits import hint, limit, load_json_file

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


def check_torch_archive(path: str | Path) -> None:
    """Refuse a ``torch.save`` (.pth, zip) file from what its zip directory declares, before torch reads any of it.

    The member count comes from the end-of-central-directory record (before the directory itself is read), then
    every member's declared uncompressed size: in all at most ``MAX_ARCHIVE_BYTES`` and at most
    ``MAX_COMPRESSION_RATIO`` times the file's size (torch stores tensors uncompressed; a 1.9 MB deflated file
    that declares gigabytes is a zip bomb), the pickled index (``data.pkl``) at most ``MAX_PICKLE_BYTES``. A file
    that is not a zip (the pre-1.6 pickle format) is refused: its size cannot be known before unpickling."""
    path = Path(path)
    expected = "expected a weights file written by torch.save (a zip archive of data.pkl and tensor data)"
    size = path.stat().st_size
    try:
        with path.open("rb") as f:
            end = zipfile._EndRecData(f)  # the end record alone: the member count before the directory is read
            if not end:
                raise DataError(f"{path}: not a zip archive; {expected}")
            members = int(end[zipfile._ECD_ENTRIES_TOTAL])
            if members > limit("MAX_ARCHIVE_MEMBERS"):
                raise DataError(f"{path}: {members:,} archive members; at most {limit('MAX_ARCHIVE_MEMBERS'):,} are read "
                                f"({hint('MAX_ARCHIVE_MEMBERS')})")  # fmt: skip
            with zipfile.ZipFile(f) as z:
                infos = z.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, struct.error, ValueError) as e:
        raise DataError(f"{path}: not a readable zip archive ({type(e).__name__}: {e}); {expected}") from None
    total = sum(i.file_size for i in infos)
    top = min(limit("MAX_ARCHIVE_BYTES"), int(limit("MAX_COMPRESSION_RATIO") * size) + 1024 * 1024)
    if total > top:
        biggest = max(infos, key=lambda i: i.file_size)
        raise DataError(f"{path}: its {len(infos):,} members declare {total:,} bytes uncompressed ({biggest.filename!r}: "
                        f"{biggest.file_size:,} stored in {biggest.compress_size:,}) from a {size:,}-byte file; at most "
                        f"{top:,} are read ({hint('MAX_COMPRESSION_RATIO')}, or ECG_BENCH_MAX_ARCHIVE_BYTES)")  # fmt: skip
    pickles = [i for i in infos if i.filename.endswith(".pkl") and i.file_size > limit("MAX_PICKLE_BYTES")]
    if pickles:
        raise DataError(f"{path}: {pickles[0].filename!r} declares {pickles[0].file_size:,} bytes; at most "
                        f"{limit('MAX_PICKLE_BYTES'):,} are read ({hint('MAX_PICKLE_BYTES')})")  # fmt: skip


PICKLED_WEIGHTS = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
"""Suffixes of pickle-based weight files: never loaded (unpickling runs code and allocates what the pickle says)."""


def safetensors_only(name: str | Path, what: str) -> dict[str, Any]:
    """The ``from_pretrained`` keyword arguments that load a Hugging Face model's weights from safetensors only.

    A local folder whose weights are only pickle-based (``pytorch_model.bin``, ...) is refused here, naming the file;
    for a hub id, ``use_safetensors=True`` makes transformers refuse a repository without safetensors weights."""
    folder = Path(name).expanduser()
    if folder.is_dir() and not any(folder.glob("*.safetensors")):
        pickled = sorted(f.name for f in folder.iterdir() if f.suffix.lower() in PICKLED_WEIGHTS)
        if pickled:
            raise DataError(f"{folder / pickled[0]}: the {what}'s weights are pickle-based; only safetensors weights are "
                            "loaded (never unpickled). Convert them where you trust the file (load it, then "
                            "save_pretrained(folder, safe_serialization=True)), or use a release with "
                            "model.safetensors")  # fmt: skip
    return {"use_safetensors": True}

"""The checkpoint manifest (``manifest.json``): what a save wrote, so that a load tells a whole checkpoint from a
damaged one before any weight is read.

::

    {"format_version": 1,
     "files": {"config.json": {"size": 5301, "sha256": "9f2c..."},
               "encoder.safetensors": {"size": 81234, "sha256": "...",
                                       "tensors": {"net.0.weight": {"dtype": "F32", "shape": [32, 12, 7]}, ...}},
               "adapter/adapter_model.safetensors": {...}, ...}}

``write_manifest`` is the last step of every save (``training.checkpoint.save_checkpoint``, hub staging): it lists
every file of the folder with its size and sha256, and for a safetensors file the tensors its header declares.
Not listed: the folder marker and the model card ``README.md`` (documentation, filled again by hub staging; a user
may edit it). ``verify_checkpoint`` is the first step of every load (``from_pretrained``, ``chat``, ``evaluate``,
``--train.resume_from``, hub staging): every listed file must be a regular file inside the folder (not a link),
of its size and sha256, a safetensors file's header must declare the listed tensors, and the contract must agree
across ``preprocessing.json``, ``elm.json`` and ``config.json``. Anything else is a :class:`CheckpointError`
naming the file. Files the manifest does not list (evaluation folders ``eval-*``) are not part of the model.

Every file is hashed: sha256 runs at 0.6-1.2 GB/s on one core of the development machine (``python -c "import
hashlib, os, time; b = os.urandom(256 << 20); t = time.perf_counter(); hashlib.sha256(b); print(256 /
(time.perf_counter() - t))"``), so the tiny test checkpoint (4.9 MB, LoRA) verifies in about 20 ms and a fully
fine-tuned 135M LLM (270 MB) costs 0.2-0.4 s, less than reading its weights; a size and header check alone would miss
a flipped byte. A folder verified once in a process is not hashed again while its files keep their size, mtime and
inode (about 5 ms).

A ``<name>.tmp-<pid>`` folder is a save that did not finish: it is never a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from ecg_bench.data.contract import check_checkpoint_contract
from ecg_bench.errors import CheckpointError, DataError
from ecg_bench.folders import MARKER
from ecg_bench.safe_files import FORMAT_KEY, check_format_version, check_safetensors_header, read_json_file

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
"""The one checkpoint format this ecg-bench writes and reads (``manifest.json`` ``format_version``)."""
UNLISTED = (MARKER, MANIFEST, "README.md")
"""Files of a checkpoint folder's top level that the manifest does not list."""
MAX_FILES = 10_000
"""A checkpoint holds tens of files; a manifest listing more is refused before any is read."""
TEMP_NAME = re.compile(r".+\.(tmp|old)-\d+")
"""A folder a save is still building (``.tmp-<pid>``) or is about to delete (``.old-<pid>``)."""

_verified: dict[str, tuple] = {}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _tensors(header: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: {"dtype": v.get("dtype"), "shape": v.get("shape")} for k, v in sorted(header.items()) if k != "__metadata__"}


def _entries(folder: Path) -> list[Path]:
    out = []
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder)
        if p.is_symlink():
            raise CheckpointError(f"{p} is a symbolic link; a checkpoint holds only its own files")
        if p.is_file() and not (len(rel.parts) == 1 and rel.name in UNLISTED):
            out.append(p)
    return out


def write_manifest(folder: str | Path) -> Path:
    """List every file of ``folder`` (size, sha256, safetensors tensors) in ``folder/manifest.json``."""
    folder = Path(folder)
    files: dict[str, dict[str, Any]] = {}
    for p in _entries(folder):
        entry: dict[str, Any] = {"size": p.stat().st_size, "sha256": _sha256(p)}
        if p.suffix == ".safetensors":
            entry["tensors"] = _tensors(check_safetensors_header(p))
        files[p.relative_to(folder).as_posix()] = entry
    path = folder / MANIFEST
    path.write_text(json.dumps({FORMAT_KEY: FORMAT_VERSION, "files": files}, indent=1) + "\n")
    return path


def latest_complete(parent: Path) -> Path | None:
    """The newest checkpoint folder beside a temporary one (by modification time), if any."""
    done = [p for p in parent.iterdir() if p.is_dir() and not TEMP_NAME.fullmatch(p.name) and (p / MANIFEST).is_file()]
    return max(done, key=lambda p: p.stat().st_mtime, default=None)


def _refuse_temp(folder: Path) -> None:
    if TEMP_NAME.fullmatch(folder.name):
        latest = latest_complete(folder.parent) if folder.parent.is_dir() else None
        hint = f"; the latest complete checkpoint beside it is {latest}" if latest else ""
        raise CheckpointError(f"{folder} is a checkpoint save that did not finish (a .tmp-/.old- folder), never a "
                              f"checkpoint{hint}")  # fmt: skip


def read_manifest(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The manifest's ``files`` of checkpoint ``folder``, its format version and entries checked."""
    folder = Path(folder)
    _refuse_temp(folder)
    f = folder / MANIFEST
    if not f.is_file() or f.is_symlink():
        raise CheckpointError(f"{folder} is not a complete ecg-bench checkpoint: {MANIFEST} (the list of its files, "
                              "written last by every save) is missing")  # fmt: skip
    try:
        doc = read_json_file(f, "checkpoint manifest (JSON object)")
        check_format_version(doc, f, FORMAT_VERSION, "a checkpoint manifest")
    except DataError as e:
        raise CheckpointError(str(e)) from None
    files = doc.get("files")
    if not isinstance(files, dict) or not files or len(files) > MAX_FILES:
        raise CheckpointError(f"{f}: 'files' must be an object of 1 to {MAX_FILES} entries (file -> size, sha256)")
    for name, e in files.items():
        parts = Path(name).parts
        ok = bool(parts) and not Path(name).is_absolute() and ".." not in parts and isinstance(e, dict)
        if not ok or not isinstance(e.get("size"), int) or not isinstance(e.get("sha256"), str):
            raise CheckpointError(f"{f}: entry {name[:200]!r} must be a relative path inside the checkpoint with an "
                                  "integer size and a sha256")  # fmt: skip
    return files


def _signature(folder: Path, names) -> tuple:
    sig = []
    for name in (MANIFEST, *names):
        try:
            st = (folder / name).lstat()
        except OSError:
            return ()
        sig.append((name, st.st_size, st.st_mtime_ns, st.st_ino))
    return tuple(sig)


def verify_checkpoint(folder: str | Path) -> Path:
    """Refuse (:class:`CheckpointError` naming the file) a checkpoint whose listed files are not all there, whole
    and of the declared tensors, or whose contract disagrees across its files; return the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"checkpoint folder not found: {folder}")
    files = read_manifest(folder)
    key = str(folder.resolve())
    sig = _signature(folder, files)
    if sig and _verified.get(key) == sig:
        return folder
    root = folder.resolve()
    for name, e in files.items():
        p = folder / name
        if p.is_symlink() or (p.exists() and root not in p.resolve().parents):
            raise CheckpointError(f"{p} is a symbolic link or lies outside the checkpoint; a checkpoint holds only its "
                                  "own files")  # fmt: skip
        if not p.is_file():
            raise CheckpointError(f"{folder} is incomplete: {name} is missing (listed in {MANIFEST}); copy the whole "
                                  "checkpoint folder again")  # fmt: skip
        size = p.stat().st_size
        if size != e["size"]:
            raise CheckpointError(f"{p}: {size:,} bytes, but the checkpoint wrote {e['size']:,} (truncated or changed "
                                  "since it was saved)")  # fmt: skip
        if "tensors" in e:
            got = _tensors(check_safetensors_header(p))
            if got != e["tensors"]:
                raise CheckpointError(f"{p}: its tensors (names, dtypes, shapes) differ from those {MANIFEST} lists")
        if _sha256(p) != e["sha256"]:
            raise CheckpointError(f"{p}: its content differs from what the checkpoint wrote (sha256 mismatch: damaged "
                                  "or changed since it was saved)")  # fmt: skip
    check_contract(folder, files)
    _verified[key] = sig
    return folder


def check_contract(folder: Path, files: dict[str, Any]) -> None:
    """The contract's files agree (``data.contract.check_checkpoint_contract``), and the weights the config's
    fine-tuning mode needs are listed (an adapter for LoRA, ``llm/`` for a full fine-tune)."""
    for need in ("config.json", "preprocessing.json", "elm.json"):
        if need not in files:
            raise CheckpointError(f"{folder / MANIFEST}: lists no {need}; every checkpoint carries it")
    try:  # valid on its own, and agreeing with config.json and elm.json (fs, segment length, representation)
        check_checkpoint_contract(folder)
    except DataError as e:
        raise CheckpointError(str(e)) from None
    cfg = read_json_file(folder / "config.json", "run config (JSON object)")
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if isinstance(model, dict):
        if model.get("full_finetune") is True and not any(n.startswith("llm/") for n in files):
            raise CheckpointError(f"{folder}: config.json says model.full_finetune but {MANIFEST} lists no llm/ weights")
        elif model.get("full_finetune") is not True and model.get("lora") is True and "adapter/adapter_model.safetensors" not in files:
            raise CheckpointError(f"{folder}: config.json says model.lora but {MANIFEST} lists no "
                                  "adapter/adapter_model.safetensors")  # fmt: skip

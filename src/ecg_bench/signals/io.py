"""Low-level readers shared by the sources: WFDB records (header + signal, with checks) and HDF5 files.

Every problem is raised as a DataError whose ``reason`` names the category a skipped record is counted
under (see ``REASONS``), with a message that names the file and what was expected.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ecg_bench.errors import DataError
from ecg_bench.limits import MAX_HEADER_BYTES, MAX_LEADS, MAX_RECORD_VALUES, hint, limit  # noqa: F401 - defaults re-exported

MISSING_FILE = "missing file"
"""A header, signal or HDF5 file that should exist does not."""
UNREADABLE_HEADER = "unreadable header"
"""A WFDB header that cannot be parsed."""
UNREADABLE_FILE = "unreadable file"
"""A signal or HDF5 file that exists but cannot be read (corrupt, wrong format, missing dataset)."""
TRUNCATED_FILE = "truncated file"
"""A WFDB signal file shorter than its header says."""
HEADER_MISMATCH = "header/data mismatch"
"""A WFDB signal file longer than its header says, or a length other than expected (a sampling rate other
than the dataset's is ``unexpected sampling rate``: ``ecg_bench.data.sources.base``)."""
CHECKSUM_MISMATCH = "checksum mismatch"
"""WFDB samples whose 16-bit checksums differ from the ones in the header."""
WRONG_UNITS = "wrong units"
"""A signal whose physical units are not a voltage (mV, uV, V)."""
WRONG_LEAD_COUNT = "wrong lead count"
"""A record with another number of leads than the dataset has."""
TOO_LARGE = "too large"
"""A header, matrix, array or HDF5 dataset claiming more leads, samples, rows or bytes than any ECG record has
(``ecg_bench.limits``: ``MAX_LEADS``, ``MAX_RECORD_VALUES``, ``MAX_HEADER_BYTES``, ``MAX_HDF5_ROWS``,
``MAX_HDF5_CHUNK_BYTES``): refused before anything is allocated."""
IMPLAUSIBLE_RATE = "implausible sampling rate"
"""A sampling rate that is not a number, not positive, or above ``limits.MAX_SAMPLING_RATE``."""

REASONS = (
    MISSING_FILE,
    UNREADABLE_HEADER,
    UNREADABLE_FILE,
    TRUNCATED_FILE,
    HEADER_MISMATCH,
    CHECKSUM_MISMATCH,
    WRONG_UNITS,
    WRONG_LEAD_COUNT,
    TOO_LARGE,
    IMPLAUSIBLE_RATE,
)
"""The skip reasons raised by this module."""

# Physical units accepted for ECG leads and the factor that converts them to mV.
_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3}

# Bits per sample of the uncompressed WFDB storage formats (formats 508/516/524 are FLAC: size unknown).
_FORMAT_BITS = {"8": 8, "16": 16, "24": 24, "32": 32, "61": 16, "80": 8, "160": 16, "212": 12, "310": 32 / 3, "311": 32 / 3}


def io_error(reason: str, message: str) -> DataError:
    """A DataError carrying ``reason`` (the skip category)."""
    err = DataError(message)
    err.reason = reason  # type: ignore[attr-defined]
    return err


@dataclass
class WFDBSignal:
    """One WFDB record read and checked: physical samples in mV plus the header facts."""

    signal: np.ndarray
    """float32 [leads, samples] in mV (NaN where the file stores the format's invalid-sample value)."""
    fs: float
    """Sampling rate (Hz) from the header."""
    leads: tuple[str, ...]
    """Signal names from the header, in file order."""
    comments: list[str] = field(default_factory=list)
    """Header comment lines (without ``#``)."""


@dataclass
class _Header:
    """The header fields the checks and the reader use (from the fast parser or from wfdb.rdheader)."""

    n_sig: int
    fs: float
    sig_len: int | None
    file_name: list[str]
    fmt: list[str]
    samps_per_frame: list[int]
    byte_offset: list[int]
    adc_gain: list[float]
    baseline: list[int]
    units: list[str]
    checksum: list[int | None]
    sig_name: list[str]
    comments: list[str]
    simple: bool
    """One format-16 file, one sample per frame, no offset or skew: read directly with numpy."""


_GAIN = re.compile(r"^([0-9.eE+-]+)(?:\(([-0-9]+)\))?(?:/(\S+))?$")


def _parse_simple_header(text: str) -> _Header | None:
    """Parse the common single-segment header form; None for anything else (wfdb then parses it)."""
    lines = [ln.strip() for ln in text.splitlines()]
    comments = [ln[1:].strip() for ln in lines if ln.startswith("#")]
    body = [ln for ln in lines if ln and not ln.startswith("#")]
    if not body:
        return None
    rec = body[0].split()
    if len(rec) < 4 or "/" in rec[0] or not rec[1].isdigit() or not rec[3].isdigit():
        return None
    try:
        n_sig, fs, sig_len = int(rec[1]), float(rec[2].split("/")[0]), int(rec[3])
    except ValueError:
        return None
    sig_lines = [ln.split() for ln in body[1 : 1 + n_sig]]
    if len(sig_lines) != n_sig or any(len(t) < 8 or not t[1].isdigit() for t in sig_lines):
        return None  # skew, samples per frame, byte offset, missing fields: leave it to wfdb
    gains = [_GAIN.match(t[2]) for t in sig_lines]
    if any(g is None or float(g.group(1)) == 0.0 for g in gains):
        return None
    try:
        checksums: list[int | None] = [int(t[6]) for t in sig_lines]
        baseline = [int(g.group(2)) if g.group(2) is not None else int(t[4]) for g, t in zip(gains, sig_lines, strict=True)]
    except ValueError:
        return None
    fmt = [t[1] for t in sig_lines]
    files = [t[0] for t in sig_lines]
    return _Header(
        n_sig=n_sig,
        fs=fs,
        sig_len=sig_len,
        file_name=files,
        fmt=fmt,
        samps_per_frame=[1] * n_sig,
        byte_offset=[0] * n_sig,
        adc_gain=[float(g.group(1)) for g in gains],
        baseline=baseline,
        units=[g.group(3) or "mV" for g in gains],
        checksum=checksums,
        sig_name=[" ".join(t[8:]) if len(t) > 8 else f"sig{i}" for i, t in enumerate(sig_lines)],
        comments=comments,
        simple=set(fmt) == {"16"} and len(set(files)) == 1,
    )


def _from_wfdb(h: Any) -> _Header:
    n = h.n_sig
    return _Header(
        n_sig=n,
        fs=float(h.fs),
        sig_len=h.sig_len,
        file_name=list(h.file_name or []),
        fmt=[str(f) for f in (h.fmt or [])],
        samps_per_frame=[int(x or 1) for x in (h.samps_per_frame or [1] * n)],
        byte_offset=[int(x or 0) for x in (h.byte_offset or [0] * n)],
        adc_gain=list(h.adc_gain or []),
        baseline=list(h.baseline or []),
        units=[u or "mV" for u in (h.units or ["mV"] * n)],
        checksum=list(h.checksum) if h.checksum is not None else [None] * n,
        sig_name=[str(x) for x in (h.sig_name or [])],
        comments=list(h.comments or []),
        simple=False,
    )


def check_record_size(where: str, n_sig: int, values: int | None) -> None:
    """Raise ``too large`` when a header or matrix claims more than ``MAX_LEADS`` signals or more than
    ``MAX_RECORD_VALUES`` values (samples x signals); called before anything of that size is allocated."""
    if n_sig > limit("MAX_LEADS"):
        raise io_error(TOO_LARGE, f"{where}: {n_sig:,} signals claimed; at most {limit('MAX_LEADS')} are read "
                                  f"({hint('MAX_LEADS')})")  # fmt: skip
    if values is not None and values > limit("MAX_RECORD_VALUES"):
        raise io_error(TOO_LARGE, f"{where}: {values:,} values (samples x signals) claimed; at most "
                                  f"{limit('MAX_RECORD_VALUES'):,} are read ({hint('MAX_RECORD_VALUES')})")  # fmt: skip


def check_rate_bounds(where: str, fs: Any) -> float:
    """``fs`` as a float when it is a finite rate in (0, ``MAX_SAMPLING_RATE``] Hz, else ``implausible sampling rate``."""
    try:
        value = float(fs)
    except (TypeError, ValueError):
        value = math.nan
    top = limit("MAX_SAMPLING_RATE")
    if not (math.isfinite(value) and 0 < value <= top):
        raise io_error(IMPLAUSIBLE_RATE, f"{where}: sampling rate {fs!r} Hz; expected a positive rate of at most "
                                         f"{top:g} Hz ({hint('MAX_SAMPLING_RATE')})")  # fmt: skip
    return value


def read_npy(path: str | Path, where: str = "") -> np.ndarray:
    """A ``.npy`` array opened read-only (memory-mapped) after its header is checked: a numeric dtype (never
    objects: no pickle), at most ``MAX_RECORD_VALUES`` values in all, and a file
    long enough for the shape it claims. DataError naming the file otherwise (``too large``, ``unreadable file``,
    ``truncated file``)."""
    from numpy.lib import format as npformat

    p = Path(path)
    where = where or str(p)
    if not p.is_file():
        raise io_error(MISSING_FILE, f"array file not found: {p}")
    try:
        with p.open("rb") as f:
            version = npformat.read_magic(f)
            read_header = npformat.read_array_header_1_0 if version == (1, 0) else npformat.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
    except (ValueError, OSError, EOFError, SyntaxError) as e:
        raise io_error(UNREADABLE_FILE, f"{where}: not a readable .npy array ({type(e).__name__}: {e})") from None
    if dtype.hasobject or dtype.kind not in "iuf" or not all(isinstance(n, int) and n >= 0 for n in shape):
        raise io_error(UNREADABLE_FILE, f"{where}: expected a real numeric array, got dtype {dtype} with shape {shape}")
    values = math.prod(shape)
    check_record_size(where, 0, values)  # the values only: the caller checks which axis holds the leads
    need = offset + values * dtype.itemsize
    size = p.stat().st_size
    if size < need:
        raise io_error(TRUNCATED_FILE, f"{where}: {size:,} bytes, but its header ({dtype} {shape}) needs {need:,}")
    if values == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(p, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")


def _precheck_record_line(text: str, hea: Path) -> None:
    """Bound what wfdb.rdheader would allocate: it sizes its lists by the record line's signal count.

    Record line: ``name[/segments] n_sig [fs[/counter][(base)] [samples [time [date]]]]``.
    """
    body = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not body or len(body[0]) < 2 or not body[0][1].isdigit():
        raise io_error(UNREADABLE_HEADER, f"cannot parse WFDB header {hea}: no record line 'name n_sig [fs [samples]]'")
    rec = body[0]
    n_sig = int(rec[1])
    n_samples = int(rec[3]) if len(rec) > 3 and rec[3].isdigit() else None
    check_record_size(str(hea), n_sig, None if n_samples is None else n_samples * max(n_sig, 1))
    if "/" in rec[0]:
        n_seg = rec[0].split("/", 1)[1]
        if not n_seg.isdigit() or int(n_seg) > len(body) - 1:
            raise io_error(UNREADABLE_HEADER, f"cannot parse WFDB header {hea}: {n_seg!r} segments claimed, not all listed")


def _header(record: Path) -> _Header:
    import wfdb

    hea = record.with_name(record.name + ".hea")
    if not hea.is_file():
        raise io_error(MISSING_FILE, f"WFDB header not found: {hea}")
    size = hea.stat().st_size
    if size > limit("MAX_HEADER_BYTES"):
        raise io_error(TOO_LARGE, f"{hea}: a {size:,}-byte header; at most {limit('MAX_HEADER_BYTES'):,} bytes are read "
                                  f"({hint('MAX_HEADER_BYTES')})")  # fmt: skip
    text = hea.read_text(errors="replace")
    _precheck_record_line(text, hea)  # before wfdb.rdheader, which allocates per claimed signal
    try:
        fast = _parse_simple_header(text)
        h = fast if fast is not None else _from_wfdb(wfdb.rdheader(str(record)))
    except Exception as e:  # wfdb raises bare ValueError/IndexError/... for malformed headers
        raise io_error(UNREADABLE_HEADER, f"cannot parse WFDB header {hea}: {type(e).__name__}: {e}") from e
    frames = sum(h.samps_per_frame) if h.samps_per_frame else h.n_sig
    check_record_size(str(hea), h.n_sig, None if h.sig_len is None else h.sig_len * max(frames, h.n_sig))
    h.fs = check_rate_bounds(str(hea), h.fs)
    return h


def _check_data_files(record: Path, header: _Header) -> None:
    """Every signal file exists and has exactly the size the header implies (for uncompressed formats)."""
    by_file: dict[str, list[int]] = {}
    for i, name in enumerate(header.file_name):
        by_file.setdefault(name, []).append(i)
    for name, chans in by_file.items():
        path = record.parent / name
        if not path.is_file():
            raise io_error(MISSING_FILE, f"WFDB signal file not found: {path} (named by {record}.hea)")
        bits = [_FORMAT_BITS.get(header.fmt[i]) for i in chans]
        if any(b is None for b in bits) or header.sig_len is None:
            continue
        spf = [header.samps_per_frame[i] for i in chans]
        expected = header.byte_offset[chans[0]] + math.ceil(
            header.sig_len * sum(b * s for b, s in zip(bits, spf, strict=True)) / 8
        )
        size = path.stat().st_size
        if size < expected:
            raise io_error(
                TRUNCATED_FILE,
                f"{path}: {size} bytes, but the header ({header.n_sig} signals x {header.sig_len} samples, "
                f"format {header.fmt[chans[0]]}) needs {expected}",
            )
        # Format 212/310/311 files may carry a padding byte or two; anything more is data the header does not describe.
        if size > expected + 3:
            raise io_error(
                HEADER_MISMATCH,
                f"{path}: {size} bytes, but the header ({header.n_sig} signals x {header.sig_len} samples) describes {expected}",
            )


def _to_mv(units: list[str], path: Path) -> np.ndarray:
    factors = []
    for i, u in enumerate(units):
        key = str(u or "mV").strip().lower()
        if key not in _TO_MV:
            raise io_error(WRONG_UNITS, f"{path}: signal {i} has units {u!r}; expected a voltage (mV, uV or V)")
        factors.append(_TO_MV[key])
    return np.asarray(factors, dtype=np.float32)


def _read_simple(record: Path, h: _Header) -> tuple[np.ndarray, np.ndarray]:
    """(digital int32 [samples, leads], physical float32 [samples, leads]) of a one-file format-16 record."""
    assert h.sig_len is not None
    d = np.fromfile(record.parent / h.file_name[0], dtype="<i2", count=h.sig_len * h.n_sig).reshape(h.sig_len, h.n_sig)
    gain = np.asarray(h.adc_gain, dtype=np.float64)
    base = np.asarray(h.baseline, dtype=np.float64)
    physical = ((d - base) / gain).astype(np.float32)
    physical[d == -32768] = np.nan  # format 16's invalid-sample value
    return d.astype(np.int32), physical


def _read_general(record: Path, h: _Header) -> tuple[np.ndarray, np.ndarray]:
    """(digital, physical) of any WFDB record, through the wfdb package."""
    import wfdb

    try:
        rec = wfdb.rdrecord(str(record), physical=False)
    except Exception as e:
        raise io_error(UNREADABLE_FILE, f"cannot read WFDB signal of {record}: {type(e).__name__}: {e}") from e
    if rec.d_signal is None or rec.d_signal.shape != (h.sig_len, h.n_sig):
        got = None if rec.d_signal is None else rec.d_signal.shape
        raise io_error(HEADER_MISMATCH, f"{record}: read {got} samples x signals, header says {(h.sig_len, h.n_sig)}")
    return rec.d_signal, rec.dac(expanded=False, return_res=32)  # dac: NaN where the invalid value is stored


def read_wfdb(record: str | Path, expect_leads: int | None = None, verify_checksum: bool = True) -> WFDBSignal:
    """Read a WFDB record (``record`` is the path without extension) and check it.

    Checks, each with its own ``reason``: header present and parseable, signal files present and of the
    size the header implies, samples matching the header checksums, voltage units (converted to mV),
    and, if ``expect_leads`` is given, the number of signals. Simple single-file format-16 records (PTB-XL,
    MIMIC-IV-ECG) are parsed and read directly; anything else goes through the wfdb package.
    """
    record = Path(record)
    h = _header(record)
    if expect_leads is not None and h.n_sig != expect_leads:
        raise io_error(WRONG_LEAD_COUNT, f"{record}.hea: {h.n_sig} signals {h.sig_name}, expected {expect_leads}")
    if h.n_sig == 0 or not h.sig_len:
        raise io_error(HEADER_MISMATCH, f"{record}.hea: no samples ({h.n_sig} signals x {h.sig_len} samples)")
    _check_data_files(record, h)
    scale = _to_mv(h.units, record)
    digital, physical = _read_simple(record, h) if h.simple else _read_general(record, h)
    if verify_checksum and all(c is not None for c in h.checksum):
        got = np.sum(digital, axis=0, dtype=np.int64) % 65536  # WFDB checksum: 16-bit sum of the samples
        bad = [h.sig_name[i] for i, (a, b) in enumerate(zip(got, h.checksum, strict=True)) if int(a) != int(b) % 65536]
        if bad:
            raise io_error(
                CHECKSUM_MISMATCH, f"{record}: samples of signal(s) {', '.join(bad)} do not match the header checksums"
            )
    signal = np.ascontiguousarray(physical.T, dtype=np.float32) * scale[:, None]
    return WFDBSignal(signal, h.fs, tuple(h.sig_name), h.comments)


def open_hdf5(path: str | Path):
    """Open an HDF5 file read-only; a missing file raises ``missing file``, a corrupt one ``unreadable file``."""
    import h5py

    p = Path(path)
    if not p.is_file():
        raise io_error(MISSING_FILE, f"HDF5 file not found: {p}")
    try:
        return h5py.File(p, "r")
    except OSError as e:
        raise io_error(UNREADABLE_FILE, f"cannot open HDF5 file {p}: {e}") from e


def hdf5_dataset(handle: Any, name: str, ndim: int, trailing: tuple[int, ...] = ()) -> Any:
    """Dataset ``name`` of an open HDF5 file, checked from its metadata alone (nothing is read): ``ndim`` dimensions
    ending in ``trailing``, a real numeric dtype of at most 8 bytes, at most ``MAX_HDF5_ROWS`` rows, rows (the
    other dimensions, the last one the leads) within ``MAX_LEADS`` / ``MAX_RECORD_VALUES``, chunks within
    ``MAX_HDF5_CHUNK_BYTES``. A 2 kB file may claim a (2, 400000000, 12) dataset that was never written: reading
    one of its rows would allocate 19 GB."""
    if name not in handle:
        raise io_error(UNREADABLE_FILE, f"{handle.filename}: no dataset {name!r} (has {sorted(handle.keys())})")
    ds = handle[name]
    where = f"{handle.filename}: dataset {name!r}"
    shape = tuple(getattr(ds, "shape", None) or ())
    if not hasattr(ds, "dtype") or len(shape) != ndim or (trailing and shape[len(shape) - len(trailing) :] != trailing):
        want = f"{ndim} dimensions" + (f" ending in {trailing}" if trailing else "")
        raise io_error(UNREADABLE_FILE, f"{where} has shape {shape}, expected {want}")
    if ds.dtype.kind not in "iuf" or ds.dtype.itemsize > 8:
        raise io_error(UNREADABLE_FILE, f"{where} has dtype {ds.dtype}, expected real numbers")
    if shape[0] > limit("MAX_HDF5_ROWS"):
        raise io_error(TOO_LARGE, f"{where} claims {shape[0]:,} rows; at most {limit('MAX_HDF5_ROWS'):,} are read "
                                  f"({hint('MAX_HDF5_ROWS')})")  # fmt: skip
    if ndim > 1:
        check_record_size(f"{where} (one row of shape {shape[1:]})", int(shape[-1]), math.prod(shape[1:]))
    chunk = math.prod(ds.chunks) * ds.dtype.itemsize if ds.chunks else 0
    top = limit("MAX_HDF5_CHUNK_BYTES")
    if chunk > top:
        raise io_error(TOO_LARGE, f"{where} is stored in chunks of {chunk:,} bytes (shape {ds.chunks}); at most "
                                  f"{top:,} are decompressed ({hint('MAX_HDF5_CHUNK_BYTES')})")  # fmt: skip
    return ds


def read_csv_table(path: str | Path, required: tuple[str, ...] = (), **kwargs: Any):
    """A metadata CSV as a pandas DataFrame, with a clear error naming the file and any missing column.

    A missing or malformed table is not a per-record problem (every record needs it), so this raises
    FileNotFoundError / DataError without a skip reason and the whole build stops.
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"metadata table not found: {p}")
    try:
        df = pd.read_csv(p, **kwargs)
    except Exception as e:
        raise DataError(f"cannot read metadata table {p}: {type(e).__name__}: {e}") from e
    missing = [c for c in required if c not in df.columns and c != df.index.name]
    if missing:
        raise DataError(f"{p}: missing column(s) {', '.join(missing)}; has {list(df.columns)}")
    return df


def json_value(value: Any) -> Any:
    """A CSV / numpy scalar as a JSON-serialisable Python value (NaN and NA become None)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return None
    except ImportError:  # pragma: no cover - pandas is a core dependency
        pass
    return value

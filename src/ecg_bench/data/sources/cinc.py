"""Reader for the PhysioNet/CinC Challenge 2020/2021 layout, shared by CPSC 2018 and CSN.

A record is two files side by side::

    A1980.hea   WFDB header: "A1980 12 500 5000" (name, leads, Hz, samples), one line per lead
                ("A1980.mat 16+24 1000/mV 16 0 202 45 0 I": file, format+byte offset, gain[(baseline)]/unit,
                resolution, ADC zero, first value, checksum, block size, lead name) and comments
                "#Age: 52", "#Sex: Male", "#Dx: 284470004,..." (SNOMED-CT codes; "# Dx:" in CSN)
    A1980.mat   MATLAB v4 (or v5) file with one int16 matrix 'val' [leads, samples] in ADC units

Samples are read with ``scipy.io.loadmat`` (no pickle, nothing executed) and checked against the header:
shape, each lead's first value and its WFDB checksum (16-bit sum of the samples), so a truncated or
corrupted .mat is a named skip instead of silently wrong numbers. Millivolts are
``(val - baseline) / gain`` per lead (the baseline defaults to the ADC zero, as in WFDB).

What a bad record is skipped as (``DataError.reason``):

- ``missing file``: the .hea, or the .mat it names, does not exist;
- ``unreadable file``: a file that cannot be read or parsed (truncated .mat, no 'val' matrix, not a
  WFDB header);
- ``wrong lead count``: header and matrix agree, but on a number of leads other than 12;
- ``header/data mismatch``: the matrix is not [leads, samples] as the header says, or its first
  values / checksums differ from the header's;
- ``too large``: a 'val' matrix past ``signals.io.MAX_LEADS`` / ``MAX_RECORD_VALUES`` (seen in the file's
  variable header, before anything is decompressed);
- ``bad Dx line``: no ``#Dx`` comment, or one that is not a comma-separated list of numeric codes;
- ``unexpected sampling rate``: the header's rate is not the dataset's (``native_fs``,
  500 Hz for CPSC 2018 and CSN), the rule of ``sources.base``;
- ``unreadable folder``: a folder under ``data_dir`` that could not be walked (no permission, a
  symbolic link to nothing, an unreadable ``RECORDS`` file). It is listed as a key ending in ``/``
  so that the store's skip summary names it; symbolic links to folders are followed, each real
  folder once.

NaN samples are passed through; the segment store's NaN policy decides (``all-NaN lead``, ...).
"""

from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import scipy.io

from ecg_bench.config import DataConfig, SourceOptions, path_field
from ecg_bench.data.record import LEADS, ECGRecord
from ecg_bench.data.sources.base import UNREADABLE_FOLDER, Source, check_sampling_rate, data_error
from ecg_bench.data.sources.snomed import SnomedMapping, is_code, load_mapping, report_from_names
from ecg_bench.errors import ConfigError
from ecg_bench.logging_utils import get_logger
from ecg_bench.signals.io import check_rate_bounds, check_record_size

log = get_logger(__name__)

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}
# gain[(baseline)][/unit], e.g. "1000/mV", "1000.0(0)/mV", "200"
_GAIN = re.compile(r"^(?P<gain>[-+0-9.eE]+)(?:\((?P<baseline>-?\d+)\))?(?:/(?P<unit>\S+))?$")


@dataclass(frozen=True)
class LeadSpec:
    """One signal line of a WFDB header."""

    file_name: str
    gain: float
    """ADC units per ``unit``."""
    baseline: int
    """ADC value of 0 ``unit``."""
    unit: str
    name: str
    init_value: int | None
    checksum: int | None


@dataclass(frozen=True)
class CinCHeader:
    """A parsed ``.hea`` file of the CinC layout."""

    record_name: str
    fs: float
    num_samples: int
    leads: tuple[LeadSpec, ...]
    comments: dict[str, str]
    """``#Key: value`` comments, keys lower-cased (``age``, ``sex``, ``dx``, ...)."""


def _int(text: str, what: str, where: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise data_error("unreadable file", f"{where}: {what} must be an integer, got {text!r}") from None


def _lead_spec(line: str, where: str) -> LeadSpec:
    f = line.split()
    if len(f) < 9:
        raise data_error(
            "unreadable file",
            f"{where}: signal line {line!r} has {len(f)} fields; expected file, format, gain/unit, resolution, "
            "ADC zero, first value, checksum, block size, lead name",
        )
    m = _GAIN.match(f[2])
    if m is None or float(m["gain"]) <= 0:
        raise data_error("unreadable file", f"{where}: gain field {f[2]!r} is not a positive 'gain[(baseline)]/unit'")
    unit = m["unit"] or "mV"
    if unit.lower() not in _UNIT_TO_MV:
        raise data_error("unreadable file", f"{where}: unit {unit!r} of lead {f[8]!r} is not one of mV, uV, V")
    adc_zero = _int(f[4], "ADC zero", where)
    return LeadSpec(
        file_name=f[0],
        gain=float(m["gain"]),
        baseline=int(m["baseline"]) if m["baseline"] is not None else adc_zero,
        unit=unit,
        name=" ".join(f[8:]),
        init_value=_int(f[5], "first value", where),
        checksum=_int(f[6], "checksum", where),
    )


def parse_header(text: str, where: str) -> CinCHeader:
    """Parse a CinC ``.hea``; ``where`` names the file in errors (DataError reason ``unreadable file``)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    comments: dict[str, str] = {}
    for ln in lines:
        if ln.startswith("#") and ":" in ln:
            key, value = ln.lstrip("#").split(":", 1)
            comments.setdefault(key.strip().lower(), value.strip())
    body = [ln for ln in lines if not ln.startswith("#")]
    if not body:
        raise data_error("unreadable file", f"{where}: no record line (expected 'name leads fs samples')")
    rec = body[0].split()
    if len(rec) < 4:
        raise data_error("unreadable file", f"{where}: record line {body[0]!r} must give name, leads, fs and samples")
    n_sig = _int(rec[1], "number of leads", where)
    try:
        fs = float(re.split(r"[/(]", rec[2])[0])  # "500", "500/...": frame rate before any counter frequency
    except ValueError:
        raise data_error("unreadable file", f"{where}: sampling rate {rec[2]!r} is not a number") from None
    n_samples = _int(rec[3], "number of samples", where)
    if n_samples > 0 and n_sig > 0:
        check_rate_bounds(where, fs)
    if fs <= 0 or n_samples <= 0 or n_sig <= 0:
        raise data_error("unreadable file", f"{where}: leads, fs and samples must be positive, got {rec[1:4]}")
    if len(body) - 1 != n_sig:
        raise data_error("unreadable file", f"{where}: record line says {n_sig} leads but {len(body) - 1} signal lines follow")
    leads = tuple(_lead_spec(ln, where) for ln in body[1:])
    return CinCHeader(rec[0], fs, n_samples, leads, comments)


def parse_dx(comments: dict[str, str], where: str) -> list[str]:
    """The ``#Dx`` SNOMED-CT codes in header order, duplicates dropped (DataError ``bad Dx line``)."""
    if "dx" not in comments:
        raise data_error("bad Dx line", f"{where}: no '#Dx:' comment (expected SNOMED-CT codes, e.g. '#Dx: 426783006')")
    codes = [c.strip() for c in comments["dx"].split(",")]
    bad = [c for c in codes if not is_code(c)]
    if bad or not codes:
        msg = f"{where}: '#Dx: {comments['dx']}' is not a comma-separated list of numeric SNOMED-CT codes"
        raise data_error("bad Dx line", msg)
    return list(dict.fromkeys(codes))


def parse_age(text: str | None) -> int | None:
    """``"52"`` -> 52; ``"NaN"``, ``"Unknown"``, ``""`` or an impossible age -> None."""
    try:
        age = float(text or "nan")
    except ValueError:
        return None
    return int(round(age)) if 0 <= age < 150 else None


def parse_sex(text: str | None) -> str | None:
    """``"Male"`` / ``"M"`` -> ``"male"``, ``"Female"`` / ``"F"`` -> ``"female"``, anything else -> None."""
    t = (text or "").strip().lower()
    return {"male": "male", "m": "male", "female": "female", "f": "female"}.get(t)


def load_val(path: Path, where: str, expect_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The 'val' matrix of a .mat file as a real 2-D array (DataError ``missing file`` / ``unreadable file``).

    Before anything is decompressed, the matrix's shape is read from the file's variable headers
    (``scipy.io.whosmat``): a shape other than ``expect_shape`` is a ``header/data mismatch``, one past
    ``signals.io.MAX_LEADS`` / ``MAX_RECORD_VALUES`` is ``too large`` (a 1.3 MB compressed file can
    inflate to 1.2 GB)."""
    if not path.is_file():
        raise data_error("missing file", f"{where}: data file {path} not found")
    try:
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
    except Exception as e:  # same failures as loadmat below, found without reading the data
        raise data_error("unreadable file", f"{path}: cannot read MATLAB file ({type(e).__name__}: {e})") from e
    shape = shapes.get("val")
    if shape is not None and len(shape) == 2:
        if expect_shape is not None and tuple(shape) != tuple(expect_shape):
            msg = f"{where}: header says {expect_shape[0]} leads x {expect_shape[1]} samples, 'val' is {shape[0]} x {shape[1]}"
            raise data_error("header/data mismatch", msg)
        check_record_size(str(path), int(shape[0]), int(shape[0]) * int(shape[1]))
    try:
        mat = scipy.io.loadmat(path, variable_names=["val"])
    except Exception as e:  # scipy raises MatReadError, ValueError, OSError, zlib errors, ... for a bad file
        raise data_error("unreadable file", f"{path}: cannot read MATLAB file ({type(e).__name__}: {e})") from e
    val = mat.get("val")
    if val is None:
        raise data_error("unreadable file", f"{path}: no 'val' matrix (CinC .mat files hold the samples in 'val')")
    val = np.asarray(val)
    if val.ndim != 2 or val.dtype.kind not in "iuf":
        msg = f"{path}: 'val' must be a real 2-D [leads, samples] matrix, got {val.dtype} {val.shape}"
        raise data_error("unreadable file", msg)
    return val


def _wfdb_checksum(val: np.ndarray) -> np.ndarray:
    """Per-lead WFDB checksum: the sum of the samples as a signed 16-bit integer."""
    s = val.astype(np.int64).sum(axis=1) & 0xFFFF
    return np.where(s >= 0x8000, s - 0x10000, s)


def check_against_header(val: np.ndarray, hdr: CinCHeader, where: str, verify_checksums: bool = True) -> None:
    """Raise ``header/data mismatch`` / ``wrong lead count`` unless ``val`` is what the header describes."""
    expected = (len(hdr.leads), hdr.num_samples)
    if val.shape != expected:
        raise data_error(
            "header/data mismatch",
            f"{where}: header says {expected[0]} leads x {expected[1]} samples, 'val' is {val.shape[0]} x {val.shape[1]}",
        )
    if len(hdr.leads) != len(LEADS):
        names = [s.name for s in hdr.leads]
        missing = [n for n in LEADS if n.lower() not in {m.lower() for m in names}]
        msg = f"{where}: {len(names)} leads {names}; expected the 12 standard leads (missing {missing})"
        raise data_error("wrong lead count", msg)
    if not verify_checksums or val.dtype.kind == "f":  # the challenge files are integer; a float matrix has no WFDB checksum
        return
    first = [(s.name, s.init_value, int(v)) for s, v in zip(hdr.leads, val[:, 0]) if s.init_value not in (None, v)]
    sums = [(s.name, s.checksum, int(c)) for s, c in zip(hdr.leads, _wfdb_checksum(val)) if s.checksum not in (None, c)]
    if first or sums:
        detail = [f"lead {n} first value {h} in header, {d} in data" for n, h, d in first]
        detail += [f"lead {n} checksum {h} in header, {d} in data" for n, h, d in sums]
        raise data_error("header/data mismatch", f"{where}: samples differ from the header: {'; '.join(detail[:4])}")


def to_millivolts(val: np.ndarray, hdr: CinCHeader) -> np.ndarray:
    """``(val - baseline) / gain`` per lead, in mV, float32 [leads, samples]."""
    baseline = np.array([s.baseline for s in hdr.leads], dtype=np.float64)[:, None]
    scale = np.array([_UNIT_TO_MV[s.unit.lower()] / s.gain for s in hdr.leads], dtype=np.float64)[:, None]
    with np.errstate(over="ignore"):  # beyond float32: infinite, refused by the record's amplitude check
        return ((val.astype(np.float64) - baseline) * scale).astype(np.float32)


def _hidden(name: str) -> bool:
    # macOS archives add "__MACOSX/" folders and "._A0001.hea" resource forks that are not records
    return name.startswith(".") or name == "__MACOSX"


def folder_key(rel: PurePosixPath) -> str:
    """The key of a folder that could not be walked: its relative path with a trailing ``/`` (``"./"`` for the root)."""
    return f"{rel}/"


def is_folder_key(key: str) -> bool:
    return key.endswith("/")


def find_records(root: Path) -> list[str]:
    """Relative stems (``"g1/A1980"``) of every ``.hea`` / ``.mat`` under ``root``, and of every record a
    ``RECORDS`` file lists, sorted. A stem with only one of its files is still listed: reading it
    reports the missing one. Symbolic links to folders are followed, each real folder once (a link
    back to a folder already walked is not walked again). Each folder that cannot be walked is
    listed as ``folder_key`` (``"g3/"``), so that reading it reports the folder."""
    stems: set[str] = set()
    walked: dict[tuple[int, int], str] = {}
    todo, linked = deque([PurePosixPath(".")]), deque()  # real folders first: a folder reached both ways keeps its own path
    while todo or linked:
        rel = todo.popleft() if todo else linked.popleft()
        folder = root / rel
        try:
            st = os.stat(folder)
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            log.warning("cannot walk folder %s (%s); its records are not listed", folder, e.strerror or e)
            stems.add(folder_key(rel))
            continue
        ident = (st.st_dev, st.st_ino)
        if ident in walked:  # a symbolic link back to a folder already walked (possibly a cycle)
            log.info("not walking %s again: it is the folder %s (symbolic link)", folder, walked[ident])
            continue
        walked[ident] = str(rel)
        names = set()
        for entry in entries:
            if _hidden(entry.name):
                continue
            names.add(entry.name)
            stem, ext = os.path.splitext(entry.name)
            if ext in (".hea", ".mat"):
                stems.add(str(rel / stem))
            elif _is_dir(entry):
                (linked if entry.is_symlink() else todo).append(rel / entry.name)
            elif not ext and entry.is_symlink() and not os.path.exists(entry.path):  # a link to nothing: probably a folder
                log.warning("%s is a symbolic link to %s, which does not exist; not walked", entry.path, os.readlink(entry.path))
                stems.add(folder_key(rel / entry.name))
        if "RECORDS" in names:
            try:
                listed = (folder / "RECORDS").read_text(errors="replace").split()
            except OSError as e:
                log.warning("cannot read %s (%s); the records it lists are not listed", folder / "RECORDS", e.strerror or e)
                stems.add(folder_key(rel))
                continue
            for entry in listed:
                # directory entries ("g1/", "01/010/") are walked anyway; ".." would leave the data folder
                if not entry.endswith("/") and ".." not in entry and not entry.startswith("/"):
                    stems.add(str(rel / entry))
    return sorted(stems)


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()  # follows symbolic links
    except OSError:
        return False


def folder_problem(folder: Path) -> str:
    """Why ``folder`` (a key ``find_records`` listed as a folder) cannot be walked, in words."""
    if folder.is_symlink() and not folder.exists():
        return f"{folder}: symbolic link to {os.readlink(folder)}, which does not exist"
    try:
        with os.scandir(folder):
            pass
    except OSError as e:
        return f"{folder}: cannot list this folder ({e.strerror or e})"
    records = folder / "RECORDS"
    if records.exists():
        try:
            records.read_bytes()
        except OSError as e:
            return f"{records}: cannot read this RECORDS file ({e.strerror or e})"
    return f"{folder}: could not be walked when the records were listed (it can be now: build again to include its records)"


@dataclass
class CinCOptions(SourceOptions):
    """A dataset in the PhysioNet/CinC 2020-2021 layout (.hea/.mat pairs, SNOMED-CT #Dx labels)."""

    snomed_mapping: str = path_field()
    """Extra SNOMED-CT code -> name table merged over the shipped one (a .json in the shipped layout, or a CSV with
    SNOMEDCTCode, Dx[, Abbreviation] columns like the CinC dx_mapping files); empty = shipped table."""
    verify_checksums: bool = True
    """Skip a record whose samples or first values differ from its header ("header/data mismatch"); false = check
    only shape and size."""


class CinCSource(Source):
    """A dataset in the CinC layout under ``cfg.data_dir`` (any folder depth). Subclasses register a name.

    Keys are the records' relative path stems (``"g1/A1980"``). ``record_id`` and ``patient_id`` are the
    file stem: these datasets publish no patient ids and hold one ECG per patient. ``labels`` are the
    SNOMED-CT names of the ``#Dx`` codes, ``report`` one English sentence per name, ``metadata`` holds
    ``age``, ``sex``, ``dx_codes``, ``dx_abbreviations`` and ``path`` (the key).
    """

    options_type = CinCOptions

    dataset = "cinc"
    """Dataset name used in messages."""
    native_fs = 500.0
    """Sampling rate every record of the dataset is published at (Hz); a header giving another is skipped."""

    def __init__(self, cfg: DataConfig) -> None:
        super().__init__(cfg)
        if not cfg.data_dir:
            raise ConfigError([f"data.data_dir must name the {self.dataset} download folder (data.source={cfg.source.type})"])
        self.root = Path(cfg.data_dir).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f"{self.dataset} data folder not found: {self.root} (data.data_dir)")
        opts = self.opts
        self.snomed_path = str(Path(opts.snomed_mapping).expanduser()) if opts.snomed_mapping else ""
        self.verify_checksums = opts.verify_checksums
        load_mapping(self.snomed_path)  # a bad data.source.snomed_mapping fails here, not once per record

    @property
    def mapping(self) -> SnomedMapping:
        """The SNOMED-CT table (shipped + ``data.source.snomed_mapping``), loaded once per process."""
        return load_mapping(self.snomed_path)

    def keys(self) -> list[str]:
        return find_records(self.root)

    def settings(self) -> dict:
        m = self.mapping
        return {"snomed_mapping": m.origin, "snomed_digest": m.digest, "verify_checksums": self.verify_checksums}

    def _paths(self, key: str) -> tuple[Path, str]:
        rel = PurePosixPath(key)
        if rel.is_absolute() or ".." in rel.parts or not rel.name:
            raise data_error("unknown record", f"{self.dataset} key {key!r}: expected a relative record path like 'g1/A0001'")
        return self.root / rel.parent / (rel.name + ".hea"), rel.name

    def read_header(self, key: str) -> CinCHeader:
        """The parsed ``.hea`` of record ``key``."""
        hea, _ = self._paths(key)
        if not hea.is_file():
            raise data_error("missing file", f"{self.dataset} record {key}: header {hea} not found")
        try:
            # odd bytes in a comment must not cost the record; a mangled number still fails parsing
            text = hea.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise data_error("unreadable file", f"{hea}: cannot read header ({e})") from e
        return parse_header(text, str(hea))

    def read(self, key: str) -> ECGRecord:
        if is_folder_key(key):
            rel = PurePosixPath(key.rstrip("/") or ".")
            if rel.is_absolute() or ".." in rel.parts:
                raise data_error("unknown record", f"{self.dataset} key {key!r}: expected a relative folder path like 'g1/'")
            raise data_error(UNREADABLE_FOLDER, folder_problem(self.root / rel))
        hea, stem = self._paths(key)
        hdr = self.read_header(key)
        check_sampling_rate(hdr.fs, self.native_fs, self.dataset, str(hea))
        files = {s.file_name for s in hdr.leads}
        if len(files) != 1 or not next(iter(files)).endswith(".mat"):
            raise data_error("unreadable file", f"{hea}: leads must all be in one .mat file, header names {sorted(files)}")
        codes = parse_dx(hdr.comments, str(hea))
        val = load_val(hea.parent / files.pop(), str(hea), (len(hdr.leads), hdr.num_samples))
        check_against_header(val, hdr, str(hea), self.verify_checksums)
        names = [self.mapping.name(c) for c in codes]
        return ECGRecord(
            record_id=stem,
            patient_id=stem,
            signal=to_millivolts(val, hdr),
            fs=hdr.fs,
            leads=tuple(s.name for s in hdr.leads),
            report=report_from_names(names),
            labels=names,
            metadata={
                "age": parse_age(hdr.comments.get("age")),
                "sex": parse_sex(hdr.comments.get("sex")),
                "dx_codes": codes,
                "dx_abbreviations": [self.mapping.abbreviation(c) for c in codes],
                "path": key,
            },
        )

"""The shared CinC-layout reader (header parsing, checks, record discovery) and the SNOMED-CT table."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import scipy.io
from cinc_fixtures import copy_record, edit_header, source

from ecg_bench.data.sources.cinc import (
    _wfdb_checksum,
    check_against_header,
    find_records,
    parse_age,
    parse_dx,
    parse_header,
    parse_sex,
    to_millivolts,
)
from ecg_bench.data.sources.snomed import (
    dx_sentence,
    load_mapping,
    report_from_names,
    table_from_csvs,
    table_from_json,
    table_to_json,
)
from ecg_bench.errors import DataError

HEADER = """R1 2 250 4
R1.mat 16+24 200(10)/mV 16 0 30 0 0 I
R1.mat 16+24 500/uV 16 0 -5 0 0 II
#Age: NaN
# Sex: F
#Dx: 426783006, 426783006,59118001
"""


def _reason(fn, *args) -> str:
    with pytest.raises(DataError) as e:
        fn(*args)
    return e.value.reason


def test_header_gain_baseline_units_and_comments():
    h = parse_header(HEADER, "R1.hea")
    assert (h.record_name, h.fs, h.num_samples) == ("R1", 250.0, 4)
    assert [(s.name, s.gain, s.baseline, s.unit) for s in h.leads] == [("I", 200.0, 10, "mV"), ("II", 500.0, 0, "uV")]
    val = np.array([[10, 30, 210, -190], [0, 500, -5, 1000]], dtype=np.int16)
    mv = to_millivolts(val, h)
    # (adu - baseline) / gain; the second lead is in microvolts: 500 adu / (500 adu/uV) = 1 uV = 0.001 mV
    np.testing.assert_allclose(mv, [[0.0, 0.1, 1.0, -1.0], [0.0, 0.001, -1e-5, 0.002]], rtol=1e-6)
    assert parse_dx(h.comments, "R1.hea") == ["426783006", "59118001"]  # duplicate dropped, order kept
    assert parse_age(h.comments["age"]) is None and parse_sex(h.comments["sex"]) == "female"
    assert [parse_age(a) for a in ("61", "61.6", "Unknown", "-1", "")] == [61, 62, None, None, None]
    assert [parse_sex(s) for s in ("Male", "m", "Unknown", None)] == ["male", "male", None, None]


@pytest.mark.parametrize(
    "text",
    [
        "",  # empty file
        "R1 2 250\n",  # record line without samples
        "R1 2 250 4\nR1.mat 16+24 200/mV 16 0 30 0 0 I\n",  # one signal line, two announced
        "R1 1 250 4\nR1.mat 16+24 abc/mV 16 0 30 0 0 I\n",  # gain not a number
        "R1 1 250 4\nR1.mat 16+24 200/mmHg 16 0 30 0 0 I\n",  # not a voltage
        "R1 1 250 4\nR1.mat 16+24 200/mV 16\n",  # truncated signal line
    ],
)
def test_malformed_header_is_unreadable(text):
    assert _reason(parse_header, text, "R1.hea") == "unreadable file"


@pytest.mark.parametrize("dx", [{}, {"dx": ""}, {"dx": "RBBB"}, {"dx": "59118001;426783006"}, {"dx": "59118001,"}])
def test_bad_dx_line(dx):
    assert _reason(parse_dx, dx, "R1.hea") == "bad Dx line"


def test_checksum_rule_matches_every_real_header(shared_data):
    heas = sorted((shared_data / "cpsc").rglob("*.hea")) + sorted((shared_data / "csn").rglob("*.hea"))
    assert len(heas) == 30
    for hea in heas:
        h = parse_header(hea.read_text(), str(hea))
        val = scipy.io.loadmat(hea.with_suffix(".mat"))["val"]
        assert _wfdb_checksum(val).tolist() == [s.checksum for s in h.leads], hea.name
        check_against_header(val, h, str(hea))  # no error on an intact record


def test_find_records_walks_folders_and_honours_records_files(shared_data, tmp_path):
    g1 = shared_data / "cpsc" / "cpsc_2018" / "g1"
    copy_record(g1, "A1980", tmp_path / "g1")
    copy_record(g1, "A1981", tmp_path / "g2")
    (tmp_path / "g2" / "A1981.hea").unlink()  # a lone .mat is still a key (reported as missing file)
    (tmp_path / "g1" / "._A1980.hea").write_bytes(b"\x00\x05\x16\x07")  # macOS resource fork
    (tmp_path / "__MACOSX" / "g1").mkdir(parents=True)
    (tmp_path / "__MACOSX" / "g1" / "._A1980.hea").write_bytes(b"\x00")
    (tmp_path / "g1" / "RECORDS").write_text("A1980\nA1999\n../escape\n")
    (tmp_path / "RECORDS").write_text("g1/\ng2/\n")
    assert find_records(tmp_path) == ["g1/A1980", "g1/A1999", "g2/A1981"]
    src = source("cpsc2018", tmp_path)
    assert _reason(src.read, "g1/A1999") == "missing file" and _reason(src.read, "g2/A1981") == "missing file"
    assert _reason(src.read, "../g1/A1980") == "unknown record"
    assert src.read("g1/A1980").record_id == "A1980"


def test_shipped_snomed_table_agrees_with_the_challenge_csvs(shared_data):
    csvs = [shared_data / "snomed" / "dx_mapping_scored.csv", shared_data / "snomed" / "dx_mapping_unscored.csv"]
    from_csv = table_from_csvs(csvs)
    shipped = load_mapping().table
    assert shipped == from_csv and len(shipped) == 133
    assert shipped["426783006"].name == "sinus rhythm" and shipped["426783006"].scored
    assert shipped["251187003"].abbreviation == "AED" and not shipped["251187003"].scored
    assert table_from_json(json.loads(json.dumps(table_to_json(from_csv))), "roundtrip") == from_csv
    assert "BSD 2-Clause" in table_to_json(from_csv)["attribution"]


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_user_mapping_is_merged_over_the_shipped_table(shared_data, tmp_path):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"codes": {"999999999": {"name": "test finding", "abbreviation": "TF"}}}))
    m = load_mapping(str(extra))
    assert m.name("999999999") == "test finding" and m.name("59118001") == "right bundle branch block"
    csv_file = tmp_path / "override.csv"
    csv_file.write_text("Dx,SNOMEDCTCode,Abbreviation\nnormal sinus rhythm,426783006,SR\n")
    assert load_mapping(str(csv_file)).name("426783006") == "normal sinus rhythm"

    # A record read with the user table; an unknown code is named, counted and logged once.
    g1 = shared_data / "cpsc" / "cpsc_2018" / "g1"
    hea = copy_record(g1, "A1980", tmp_path / "data")
    edit_header(hea, lambda ls: [ln.replace("#Dx: 284470004", "#Dx: 999999999,284470004,123456789") for ln in ls])
    src = source("cpsc2018", tmp_path / "data", snomed_mapping=str(extra))
    handler, logger = _Collect(), logging.getLogger("ecg_bench.data.sources.snomed")
    logger.addHandler(handler)  # on the module's logger: the package logger may not propagate to caplog
    try:
        r = src.read("A1980")
        src.read("A1980")
    finally:
        logger.removeHandler(handler)
    assert r.labels == ["test finding", "premature atrial contraction", "SNOMED 123456789"]
    assert r.metadata["dx_abbreviations"] == ["TF", "PAC", ""]
    assert src.mapping.unknown["123456789"] == 2
    assert sum("123456789" in msg for msg in handler.messages) == 1
    assert src.settings()["snomed_mapping"] == f"builtin+{extra.resolve()}"
    assert src.settings()["snomed_digest"] != source("cpsc2018", tmp_path / "data").settings()["snomed_digest"]

    with pytest.raises(FileNotFoundError, match="nope.json"):
        source("cpsc2018", tmp_path / "data", snomed_mapping=str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"codes": {"abc": {"name": "x"}}}))
    with pytest.raises(DataError, match="'abc'"):
        load_mapping(str(bad))


def test_report_sentences():
    assert dx_sentence("1st degree av block") == "1st degree AV block."
    assert dx_sentence("s t changes") == "ST changes."
    assert dx_sentence("wolff parkinson white pattern") == "Wolff Parkinson White pattern."
    assert dx_sentence("mobitz type i wenckebach atrioventricular block") == "Mobitz type I Wenckebach atrioventricular block."
    assert report_from_names(["sinus rhythm", "prolonged qt interval"]) == "Sinus rhythm. Prolonged QT interval."
    assert report_from_names([]) == ""


def test_missing_data_dir_is_a_config_error(tmp_path):
    from ecg_bench.errors import ConfigError

    with pytest.raises(ConfigError, match="data.data_dir"):
        source("csn", "")
    with pytest.raises(FileNotFoundError, match="not-there"):
        source("csn", tmp_path / "not-there")


def test_every_folder_that_cannot_be_walked_is_reported(shared_data, tmp_path, monkeypatch):
    """Symbolic links to folders are followed (each real folder once); a link to nothing and a folder that
    cannot be listed are skips named by path in meta.json and the skip summary, counted apart from records."""
    import os

    from ecg_bench.data.store import build_store, skip_summary

    g1 = shared_data / "cpsc" / "cpsc_2018" / "g1"
    root = tmp_path / "cpsc"
    copy_record(g1, "A1980", root / "g1")
    copy_record(g1, "A1981", tmp_path / "elsewhere")
    (root / "g2").symlink_to(tmp_path / "elsewhere", target_is_directory=True)  # followed
    (root / "g1" / "again").symlink_to(root, target_is_directory=True)  # a cycle: not walked twice
    (root / "g3").symlink_to(tmp_path / "gone", target_is_directory=True)  # dangling
    copy_record(g1, "A1982", root / "g4")
    real_scandir = os.scandir

    def scandir(path="."):
        if isinstance(path, str | os.PathLike) and os.fspath(path).endswith("g4"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    src = source("cpsc2018", root)
    assert src.keys() == ["g1/A1980", "g2/A1981", "g3/", "g4/"]
    with pytest.raises(DataError, match=r"g3: symbolic link to .*gone, which does not exist") as e:
        src.read("g3/")
    assert e.value.reason == "unreadable folder"
    assert "g4: cannot list this folder (Permission denied)" in str(pytest.raises(DataError, src.read, "g4/").value)

    store = build_store(src, tmp_path / "store", "cpsc2018", 250, 500, workers=1)
    assert store.meta["num_records"] == 2 and store.meta["skipped"] == {"unreadable folder": 2}
    assert [r["key"] for r in store.meta["skipped_records"]] == ["g3/", "g4/"]
    summary = skip_summary(store.meta)
    assert summary.startswith("skipped 0 of 2 records, and 2 folders that could not be walked:")
    assert f"{root / 'g3'}: symbolic link" in summary and f"{root / 'g4'}: cannot list" in summary


# ---------------------------------------------------------------------------------------------- bombs


def _mat_claiming(path, shape: tuple[int, int]) -> None:
    """A ~180-byte compressed MATLAB v5 file whose 'val' header claims ``shape`` of int16 (the data is a
    12 x 7 matrix's: no reader may get that far). A real one, 12 x 50M zeros, is 1.3 MB and inflates to 1.2 GB."""
    import struct
    import zlib

    scipy.io.savemat(path, {"val": np.zeros((12, 7), np.int16)}, format="5", do_compression=True)
    data = path.read_bytes()
    _, n = struct.unpack("<II", data[128:136])
    raw = zlib.decompress(data[136 : 136 + n])
    i = raw.find(struct.pack("<ii", 12, 7))
    raw = raw[:i] + struct.pack("<ii", *shape) + raw[i + 8 :]
    packed = zlib.compress(raw)
    path.write_bytes(data[:128] + struct.pack("<II", 15, len(packed)) + packed)


@pytest.fixture()
def no_loadmat(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail("scipy.io.loadmat was called on a matrix whose header already shows it is wrong or too large")

    monkeypatch.setattr(scipy.io, "loadmat", refuse)


def test_mat_bomb_is_a_named_skip_before_loadmat(shared_data, tmp_path, no_loadmat):
    g1 = shared_data / "cpsc" / "cpsc_2018" / "g1"
    root = tmp_path / "cpsc"
    mismatch = copy_record(g1, "A1980", root)  # header: 12 x 5000; matrix claims 12 x 50M
    _mat_claiming(mismatch.with_suffix(".mat"), (12, 50_000_000))
    both = copy_record(g1, "A1980", root, new_stem="A1999")  # header and matrix agree on 12 x 50M
    edit_header(both, lambda ls: [ls[0].replace(" 5000", " 50000000")] + ls[1:])
    _mat_claiming(both.with_suffix(".mat"), (12, 50_000_000))
    assert mismatch.with_suffix(".mat").stat().st_size < 300
    src = source("cpsc2018", root)
    with pytest.raises(DataError, match="'val' is 12 x 50000000") as e:
        src.read("A1980")
    assert e.value.reason == "header/data mismatch"
    with pytest.raises(DataError, match="600,000,000 values") as e:
        src.read("A1999")
    assert e.value.reason == "too large"


def test_memory_error_in_one_record_is_a_skip_not_the_end_of_the_build(shared_data, tmp_path, monkeypatch):
    from ecg_bench.data.sources.cinc import CinCSource
    from ecg_bench.data.store import build_store

    root = tmp_path / "cpsc"
    for stem in ("A1980", "A1983"):
        copy_record(shared_data / "cpsc" / "cpsc_2018" / "g1", stem, root)
    read = CinCSource.read

    def read_or_run_out(self, key):  # what an unforeseen bomb does: MemoryError from inside a reader
        if key == "A1983":
            raise MemoryError
        return read(self, key)

    monkeypatch.setattr(CinCSource, "read", read_or_run_out)
    store = build_store(source("cpsc2018", root), tmp_path / "store", "cpsc2018", 250, 500)
    assert store.meta["num_records"] == 1 and store.meta["skipped"] == {"too large": 1}

"""`ecg-bench chat`: a trained checkpoint answers about one ECG file (real PTB-XL WFDB, real CPSC .mat, CODE-15%
HDF5, .npy/.csv arrays), preprocessed exactly as its segment store was; bad files exit 2 with a clear message."""

from __future__ import annotations

import io

import numpy as np
import pytest

from ecg_bench import cli
from ecg_bench.data.ecg_file import read_ecg_file
from ecg_bench.inference import from_pretrained

PTBXL = "ptbxl/records500/06000/06000_hr"
CPSC = "cpsc/cpsc_2018/g1/A1980"
Q = "Is there tachycardia?"

pytestmark = pytest.mark.slow  # the session's tiny checkpoint is trained once (~30 s on 2 cores); each test is seconds


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return from_pretrained(tiny_checkpoint[1], device="cpu")


def _chat(capsys, ck, ecg, *flags):
    rc = cli.main(["chat", "--checkpoint", str(ck), "--ecg", str(ecg), *flags])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_answers_about_a_real_ptbxl_record_and_a_real_cpsc_mat(tiny_checkpoint, model, shared_data, capsys):
    ck = tiny_checkpoint[1]
    for ecg in (shared_data / PTBXL, shared_data / f"{PTBXL}.hea", shared_data / f"{CPSC}.mat", shared_data / f"{CPSC}.hea"):
        rc, out, err = _chat(capsys, ck, ecg, "--question", Q)
        expected = model.ask(ecg, Q)
        assert rc == 0, err
        assert expected.strip() and out == expected + "\n"  # an answer in words, the one the loaded model gives


def test_the_ecg_is_preprocessed_as_its_store_would_be(model, shared_data, tmp_path):
    """The segments chat feeds the model are the ones a PTB-XL / CPSC segment store at the model's rate holds."""
    from ecg_bench.config import DataConfig, SourceOptions, choice
    from ecg_bench.data.sources.base import SOURCES
    from ecg_bench.data.store import build_store

    c = model.contract
    for source, folder, record_id, ecg in (("ptbxl", "ptbxl", "6000", PTBXL), ("cpsc2018", "cpsc", "A1980", f"{CPSC}.mat")):
        src = SOURCES.get(source)(DataConfig(source=choice(SourceOptions, source), data_dir=str(shared_data / folder)))
        store = build_store(src, tmp_path / source, source, c.fs, c.segment_len, workers=1)
        got = model.preprocess(shared_data / ecg)
        assert got.shape == (len(store.by_record(record_id)), 12, c.segment_len) == (5, 12, 500)
        np.testing.assert_array_equal(got, store.signals(store.by_record(record_id)))


def test_segment_choice(tiny_checkpoint, model, shared_data, capsys):
    ck, ecg = tiny_checkpoint[1], shared_data / PTBXL
    rc, out, _ = _chat(capsys, ck, ecg, "--question", Q, "--segment", "all")
    assert rc == 0
    assert out.splitlines() == [f"[segment {i}] {model.ask(ecg, Q, segment=i)}" for i in range(5)]
    rc, out, _ = _chat(capsys, ck, ecg, "--question", Q, "--segment", "3")
    assert rc == 0 and out == model.ask(ecg, Q, segment=3) + "\n"
    rc, _, err = _chat(capsys, ck, ecg, "--question", Q, "--segment", "5")
    assert rc == 2 and "segment 5 asked for, but it has 5 segment(s)" in err and "Traceback" not in err
    rc, _, err = _chat(capsys, ck, ecg, "--question", Q, "--segment", "first")
    assert rc == 2 and "expected a segment number (0 = the first) or 'all'" in err


def test_questions_from_stdin_until_eof(tiny_checkpoint, model, shared_data, capsys, monkeypatch):
    ecg = shared_data / f"{CPSC}.mat"
    monkeypatch.setattr("sys.stdin", io.StringIO("Is the rhythm regular?\n\n  What is the heart rate category?\n"))
    rc, out, _ = _chat(capsys, tiny_checkpoint[1], ecg)
    talk = model.conversation(model.preprocess(ecg)[0])
    expected = [talk.ask("Is the rhythm regular?"), talk.ask("What is the heart rate category?")]
    assert rc == 0 and out.splitlines() == expected
    assert talk.history[0]["content"].startswith("<ecg>\n") and "<ecg>" not in talk.history[2]["content"]


def test_arrays_and_a_code15_exam(tiny_checkpoint, model, shared_data, tmp_path, capsys):
    import h5py
    from scipy.signal import resample_poly

    ck = tiny_checkpoint[1]
    rec = read_ecg_file(shared_data / PTBXL)
    expected = model.ask(shared_data / PTBXL, Q)
    np.save(tmp_path / "ecg.npy", rec.signal)
    np.save(tmp_path / "ecg_uv.npy", rec.signal * 1000)
    np.savetxt(tmp_path / "ecg.csv", rec.signal, delimiter=",", fmt="%.6f")
    for name, flags in (("ecg.npy", []), ("ecg_uv.npy", ["--units", "uV"]), ("ecg.csv", [])):
        rc, out, err = _chat(capsys, ck, tmp_path / name, "--question", Q, "--fs", "500", *flags)
        assert rc == 0 and out == expected + "\n", (name, err)
    # leads named in another order: matched by name, as the store does
    order = [11, *range(11)]
    np.save(tmp_path / "shuffled.npy", rec.signal[order])
    names = [rec.leads[i] for i in order]
    rc, out, _ = _chat(capsys, ck, tmp_path / "shuffled.npy", "--question", Q, "--fs", "500", "--leads", *names)
    assert rc == 0 and out == expected + "\n"

    # CODE-15%: 400 Hz, [samples, leads], zero-padded to 4096, several exams per file and a filler row
    at400 = resample_poly(rec.signal, 4, 5, axis=1).astype(np.float32)  # [12, 4000]
    tracing = np.zeros((4096, 12), np.float32)
    tracing[48:4048] = at400.T
    with h5py.File(tmp_path / "exams_part0.hdf5", "w") as f:
        f["tracings"] = np.stack([tracing, tracing[::-1] * 0.5, np.zeros_like(tracing)])
        f["exam_id"] = np.array([1169160, 42, 0])
    rc, out, err = _chat(capsys, ck, tmp_path / "exams_part0.hdf5", "--question", Q, "--exam_id", "1169160")
    assert rc == 0, err
    assert out == model.ask(at400, Q, fs=400) + "\n"
    rc, _, err = _chat(capsys, ck, tmp_path / "exams_part0.hdf5", "--question", Q)
    assert rc == 2 and "holds 2 exams (1169160, 42); name one with --exam_id" in err


@pytest.mark.parametrize(
    "name, array, flags, message",
    [
        ("transposed.npy", np.ones((5000, 12)), ["--fs", "500"], "5000 rows, expected 12 leads"),
        ("cube.npy", np.ones((2, 12, 500)), ["--fs", "500"], "expected a real 2-D array [leads, samples]"),
        ("eight.npy", np.ones((8, 5000)), ["--fs", "500"], "8 rows, expected 12 leads"),
        ("nan.npy", "nan_lead", ["--fs", "500"], "all-NaN lead: V2"),
        ("flat.npy", "flat_lead", ["--fs", "500"], "flat lead: I"),
        ("short.npy", np.random.default_rng(0).normal(size=(12, 300)), ["--fs", "500"], "too short"),
        ("nofs.npy", np.random.default_rng(0).normal(size=(12, 5000)), [], "carries no sampling rate; give it (e.g. --fs 500)"),
        ("units.npy", np.random.default_rng(0).normal(size=(12, 5000)), ["--fs", "500", "--units", "furlong"], "units 'furlong'"),
        ("text.csv", "not,a,number\n", ["--fs", "500"], "not a numeric .csv"),
        ("missing.npy", None, ["--fs", "500"], "ECG file not found"),
        ("record.xyz", "", [], "unknown ECG file type '.xyz'"),
    ],
)
def test_bad_files_exit_2_with_a_clear_message(tiny_checkpoint, tmp_path, capsys, name, array, flags, message):
    path = tmp_path / name
    if isinstance(array, np.ndarray):
        np.save(path, array)
    elif array in ("nan_lead", "flat_lead"):
        sig = np.random.default_rng(0).normal(size=(12, 5000))
        sig[7 if array == "nan_lead" else 0] = np.nan if array == "nan_lead" else 0.3
        np.save(path, sig)
    elif isinstance(array, str):
        path.write_text(array)
    rc, out, err = _chat(capsys, tiny_checkpoint[1], path, "--question", Q, *flags)
    assert rc == 2 and out == "", err
    assert message in err and "Traceback" not in err
    if array is not None:
        assert name in err


def test_a_wfdb_record_with_the_wrong_leads_is_refused(tiny_checkpoint, shared_data, tmp_path, capsys):
    """A 12-signal header whose lead names are not the standard 12 is refused by the store's lead check, by name."""
    for ext in ("hea", "dat"):
        (tmp_path / f"r.{ext}").write_bytes((shared_data / f"{PTBXL}.{ext}").read_bytes())
    hea = tmp_path / "r.hea"
    hea.write_text(hea.read_text().replace(" V6", " X6").replace("06000_hr.dat", "r.dat"))
    rc, _, err = _chat(capsys, tiny_checkpoint[1], tmp_path / "r", "--question", Q)
    assert rc == 2 and "missing lead(s) V6" in err and str(tmp_path / "r") in err

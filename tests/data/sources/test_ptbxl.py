"""The PTB-XL source on the real records 6000-6009 in ../shared/data/ptbxl, on damaged copies, and with translation."""

from __future__ import annotations

import json
import logging
import pickle

import numpy as np
import pandas as pd
import pytest
from layout_fixtures import copy_ptbxl, flip_sample, real_signal, truncate, write_wfdb

from ecg_bench.config import DataConfig
from ecg_bench.data.record import LEADS
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.data.sources.ptbxl import BAD_METADATA, parse_scp_codes, statement_text
from ecg_bench.data.store import build_store
from ecg_bench.errors import DataError
from ecg_bench.signals.processing import resample, to_canonical_leads
from config_helpers import data_config


def _source(data_dir, **kw):
    return SOURCES.get("ptbxl")(data_config(source="ptbxl", data_dir=str(data_dir), **kw))


@pytest.fixture(scope="module")
def real(shared_data):
    src = _source(shared_data / "ptbxl")
    return src, {k: src.read(k) for k in src.keys()}


def test_keys_and_ids(real):
    src, recs = real
    assert src.keys() == [f"records500/06000/{i:05d}_hr" for i in range(6000, 6010)]
    by_id = {r.record_id: r for r in recs.values()}
    assert sorted(by_id) == [str(i) for i in range(6000, 6010)]
    # patient_id is stored as a float in the CSV ("5028.0"); the record carries the integer.
    assert by_id["6000"].patient_id == "5028" and by_id["6002"].patient_id == "7588" and by_id["6009"].patient_id == "6362"


def test_signals_in_mv(real, shared_data):
    _, recs = real
    for rec in recs.values():
        ecg_id = int(rec.record_id)
        assert rec.fs == 500.0 and rec.signal.shape == (12, 5000) and rec.signal.dtype == np.float32
        np.testing.assert_allclose(rec.signal, real_signal(shared_data, ecg_id).T, atol=1e-6)
    # Lead names come from the header (AVR, AVL, AVF): preprocessing matches them case-insensitively.
    rec = recs["records500/06000/06002_hr"]
    assert rec.leads[3:6] == ("AVR", "AVL", "AVF")
    np.testing.assert_array_equal(to_canonical_leads(rec.signal, rec.leads), rec.signal)
    # Typical ECG amplitudes in mV: the largest deflection of a 12-lead record is a few mV, not thousands of adu.
    assert 0.5 < np.abs(rec.signal).max() < 5.0


def test_reports_labels_and_metadata(real):
    _, recs = real
    by_id = {r.record_id: r for r in recs.values()}
    assert by_id["6001"].report == "sinusrhythmus p-verbreiterung lagetyp normal st & t abnormal, pathologisch"
    assert by_id["6004"].report == "sinus rhythm. normal ecg."
    r = by_id["6002"]
    assert r.labels == ["normal ECG", "incomplete right bundle branch block", "sinus bradycardia"]
    assert r.metadata["scp_codes"] == {"NORM": 100.0, "IRBBB": 100.0, "SBRAD": 0.0}
    assert r.metadata["statements"] == "Normal ECG. Incomplete right bundle branch block. Sinus bradycardia."
    assert (r.metadata["strat_fold"], r.metadata["age"], r.metadata["sex"]) == (4, 29.0, "male")
    assert by_id["6000"].metadata["sex"] == "female" and by_id["6000"].labels == [
        "normal ECG",
        "non-specific T-wave changes",
        "sinus rhythm",
    ]
    assert by_id["6001"].labels == ["non-specific ST changes", "sinus rhythm"]
    assert by_id["6007"].metadata["baseline_drift"] == ", II-AVR"
    json.dumps([x.metadata for x in recs.values()])  # JSON-serialisable


def test_scp_codes_parsed_without_eval():
    assert parse_scp_codes("{'NORM': 100.0, 'SR': 0.0}", "row") == {"NORM": 100.0, "SR": 0.0}
    for bad in ("__import__('os').system('true')", "[1, 2]", "{'NORM': 'high'}"):
        with pytest.raises(DataError) as e:
            parse_scp_codes(bad, "row")
        assert e.value.reason == BAD_METADATA
    assert statement_text(["normal ECG", "sinus rhythm"]) == "Normal ECG. Sinus rhythm."


def test_picklable_and_read_order_independent(real):
    src, recs = real
    clone = pickle.loads(pickle.dumps(src))
    key = "records500/06000/06007_hr"
    np.testing.assert_array_equal(clone.read(key).signal, recs[key].signal)
    fresh = _source(src.cfg.data_dir)  # nothing loaded yet: read() alone works
    assert fresh.read(key).report == recs[key].report


def test_records100_folder(shared_data, tmp_path):
    root = copy_ptbxl(shared_data, tmp_path / "ptbxl")
    sig = real_signal(shared_data, 6003)
    at100 = resample(sig.T, 500, 100).T
    write_wfdb(
        root / "records100/06000/06003_lr", at100, 100, ["I", "II", "III", "AVR", "AVL", "AVF"] + [f"V{i}" for i in range(1, 7)]
    )
    write_wfdb(
        root / "records100/06000/06004_lr", at100, 500, ["I", "II", "III", "AVR", "AVL", "AVF"] + [f"V{i}" for i in range(1, 7)]
    )
    src = _source(root, folder="records100")
    rec = src.read("records100/06000/06003_lr")
    assert (rec.record_id, rec.fs, rec.signal.shape) == ("6003", 100.0, (12, 1000))
    np.testing.assert_allclose(rec.signal, at100.T, atol=6e-4)  # 1000 adu/mV quantisation
    with pytest.raises(DataError, match="header says 500 Hz, PTB-XL records100 records are 100 Hz") as e:
        src.read("records100/06000/06004_lr")
    assert e.value.reason == "unexpected sampling rate"  # the one rule of every reader (sources.base)
    with pytest.raises(DataError) as e:
        src.read("records100/06000/06005_lr")
    assert e.value.reason == "missing file"


def test_corrupt_records_are_skipped_by_name(shared_data, tmp_path):
    """Every damaged record is skipped under its own reason; the good ones land in the store with their values."""
    root = copy_ptbxl(shared_data, tmp_path / "ptbxl")
    rec_dir = root / "records500/06000"
    truncate(rec_dir / "06001_hr.dat")  # truncated .dat
    flip_sample(rec_dir / "06003_hr.dat")  # header checksums no longer match
    for ext in (".hea", ".dat"):  # database row, no files
        (rec_dir / f"06005_hr{ext}").unlink()
    sig = real_signal(shared_data, 6007)
    sig[:, 8] = np.nan  # V3 missing for the whole record
    write_wfdb(rec_dir / "06007_hr", sig, 500, ["I", "II", "III", "AVR", "AVL", "AVF"] + [f"V{i}" for i in range(1, 7)])
    write_wfdb(
        rec_dir / "06008_hr",
        real_signal(shared_data, 6008)[:, :11],
        500,
        ["I", "II", "III", "AVR", "AVL", "AVF"] + [f"V{i}" for i in range(1, 6)],
    )  # 11 leads
    db = pd.read_csv(root / "ptbxl_database.csv")
    db[db["ecg_id"] != 6009].to_csv(root / "ptbxl_database.csv", index=False)  # files, no row

    store = build_store(_source(root), tmp_path / "store", "ptbxl", 250, 500, workers=1)
    assert store.meta["skipped"] == {
        "all-NaN lead": 1,
        "checksum mismatch": 1,
        "missing file": 1,
        "missing metadata": 1,
        "truncated file": 1,
        "wrong lead count": 1,
    }
    by_reason = {s["reason"]: s for s in store.meta["skipped_records"]}
    assert "06009_hr" in by_reason["missing metadata"]["key"] and "06005_hr" in by_reason["missing file"]["key"]
    landed = sorted({row["record_id"] for row in store.index})
    assert landed == ["6000", "6002", "6004", "6006"]
    # 10 s at 250 Hz -> five 2 s segments per record, canonical order, values in mV.
    seg = store.by_record("6002")
    assert len(seg) == 5
    expected = resample(real_signal(shared_data, 6002).T, 500, 250)
    np.testing.assert_allclose(store.signals(seg).transpose(1, 0, 2).reshape(12, -1), expected, atol=1e-4)
    assert store.meta["leads"] == list(LEADS)


# --------------------------------------------------------------------------------------------------
# Translation


def _tiny_mt(folder):
    """A random 1-layer BART with a word-level tokenizer, biased to always emit 'hello': runs the real
    transformers code path offline (the translations are nonsense, the plumbing is what is tested)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import BartConfig, BartForConditionalGeneration, PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>", "sinus", "rhythm", "hello", "normal", "ecg"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    cfg = BartConfig(
        vocab_size=len(words),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=300,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
    )
    torch.manual_seed(0)
    model = BartForConditionalGeneration(cfg)
    with torch.no_grad():
        model.final_logits_bias[0, words.index("hello")] = 50.0
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder


def test_translation_with_local_model_and_cache(shared_data, tmp_path):
    from ecg_bench.data.translate import Translator

    model_dir = _tiny_mt(tmp_path / "mt")
    cache = tmp_path / "cache.json"
    reports = sorted(set(pd.read_csv(shared_data / "ptbxl" / "ptbxl_database.csv")["report"]))
    assert len(reports) == 7  # 10 rows, 7 distinct reports
    last = "sinus rhythm. normal ecg."
    first = [r for r in reports if r != last]
    out = Translator(str(model_dir), cache, batch_size=4, max_new_tokens=3).translate(first + ["", "  "])
    assert out == {r: "hello hello hello" for r in first}  # blanks are not translated
    assert json.loads(cache.read_text()) == out

    # The source translates only what the cache lacks (one report), through the same model.
    src = _source(shared_data / "ptbxl", report_language="english", translate_model=str(model_dir), translation_cache=str(cache))
    rec = src.read("records500/06000/06001_hr")
    cached = json.loads(cache.read_text())
    assert sorted(cached) == reports and cached[last].startswith("hello") and cached[last] != "hello hello hello"
    assert rec.report == "hello hello hello" and rec.metadata["report_original"].startswith("sinusrhythmus p-verbreiterung")
    assert src.read("records500/06000/06004_hr").report == cached[last]
    assert rec.labels == ["non-specific ST changes", "sinus rhythm"]  # labels never depend on the model

    # A cache that holds every report is enough: the model is not loaded again (here it no longer exists).
    import shutil

    shutil.rmtree(model_dir)
    again = _source(
        shared_data / "ptbxl", report_language="english", translate_model=str(model_dir), translation_cache=str(cache)
    )
    assert again.read("records500/06000/06001_hr").report == rec.report


def test_translation_skipped_cleanly(shared_data, tmp_path):
    key = "records500/06000/06001_hr"
    rec = _source(shared_data / "ptbxl", report_language="english").read(key)  # no model configured
    assert rec.report == "Non-specific ST changes. Sinus rhythm." == rec.metadata["statements"]
    assert "report_original" not in rec.metadata
    # A handler on the module's logger: the package logger may not propagate to caplog (setup_logging).
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    logger = logging.getLogger("ecg_bench.data.translate")
    logger.addHandler(handler)
    try:
        missing = _source(
            shared_data / "ptbxl",
            report_language="english",
            translate_model=str(tmp_path / "no-such-model"),
            translation_cache=str(tmp_path / "c.json"),
        ).read(key)
    finally:
        logger.removeHandler(handler)
    assert missing.report == rec.report
    assert any("could not be loaded" in r.getMessage() for r in records)
    assert not (tmp_path / "c.json").exists()
    # The original language is the default.
    assert _source(shared_data / "ptbxl").read(key).report.startswith("sinusrhythmus")


def test_checksum_verification_can_be_turned_off(shared_data, tmp_path):
    root = copy_ptbxl(shared_data, tmp_path / "ptbxl")
    flip_sample(root / "records500/06000/06003_hr.dat")
    with pytest.raises(DataError) as e:
        _source(root).read("records500/06000/06003_hr")
    assert e.value.reason == "checksum mismatch"
    rec = _source(root, verify_checksums=False).read("records500/06000/06003_hr")
    assert rec.signal.shape == (12, 5000) and rec.record_id == "6003"

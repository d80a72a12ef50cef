"""The report on scores that are not numbers and on hostile results.json files: NaN is refused (JSON has none; our
writer writes null), null is reported as missing with a warning naming the run and condition (never a false
significance, never "nan ± nan"), a deep file is a message, and results.json carries its format version."""

from __future__ import annotations

import json
import logging
import math

import pytest
from test_report import HALF, ONES, ZEROS, _results, _write

from ecg_bench import cli
from ecg_bench.errors import DataError
from ecg_bench.evaluation.report import write_report
from ecg_bench.evaluation.results_file import read_results, write_results


def _runs(root, real, zeros):
    for seed in (0, 1):
        _write(root, f"s{seed}", _results("conv1d", 0, seed, {"real": real, "zeros": zeros}))
    return root


def test_nan_per_sample_scores_are_refused_naming_the_file(tmp_path):
    res = _results("conv1d", 0, 0, {"real": ONES, "zeros": ZEROS})
    for s in res["samples"]:
        s["acc_normalized"] = float("nan")
    run = tmp_path / "runs" / "nan"
    run.mkdir(parents=True)
    (run / "results.json").write_text(json.dumps(res))  # Python writes the NaN literal
    with pytest.raises(DataError, match=r"nan/results\.json: .*NaN"):
        write_report([tmp_path / "runs"], tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_null_scores_are_missing_with_a_warning_and_no_false_significance(tmp_path, caplog):
    root = _runs(tmp_path / "runs", ONES, ZEROS)
    for seed in (0, 1):  # the zeros condition of every run: no score defined
        f = root / f"s{seed}" / "results.json"
        res = json.loads(f.read_text())
        for s in res["samples"]:
            if s["condition"] == "zeros":
                s["acc_normalized"] = None
        res["conditions"]["zeros"]["metrics"]["acc_normalized"] = None
        f.write_text(json.dumps(res))
    with caplog.at_level(logging.WARNING, logger="ecg_bench"):
        rep = write_report([root], tmp_path / "report")
    warned = [r.getMessage() for r in caplog.records if "reported as missing" in r.getMessage()]
    assert any(f"{root / 's0' / 'results.json'}: condition 'zeros' has 11 value(s) of acc_normalized" in w for w in warned)
    audit = rep.tables.get("audit")
    assert audit is None or not audit.records  # nothing compared against scores that do not exist
    summary = [r for r in rep.tables["summary"].records if r["condition"] == "zeros" and r["metric"] == "acc_normalized"]
    assert summary == []  # missing, not "nan ± nan"
    text = "\n".join(p.read_text() for p in (tmp_path / "report").rglob("*.md"))
    assert "nan" not in text.lower() and "p < 0.001" not in text and "scores lower" not in text


def test_the_writer_turns_nan_into_null_and_the_reader_checks_the_version(tmp_path):
    f = write_results({"config": {}, "conditions": {"real": {"metrics": {"acc": float("nan"), "n": 3}}}},
                      tmp_path / "results.json")  # fmt: skip
    doc = read_results(f)
    assert doc["format_version"] == 1 and doc["conditions"]["real"]["metrics"] == {"acc": None, "n": 3}
    for version, found in ((None, "no format_version"), (7, "format_version 7")):
        raw = json.loads(f.read_text())
        raw.pop("format_version") if version is None else raw.update(format_version=version)
        f.write_text(json.dumps(raw))
        with pytest.raises(DataError, match=rf"results\.json: a results\.json of {found}; this ecg-bench reads "
                                            r"format_version 1 only"):  # fmt: skip
            read_results(f)


def test_a_deeply_nested_results_json_is_a_message_not_a_recursion_error(tmp_path, capsys):
    run = tmp_path / "runs" / "deep"
    run.mkdir(parents=True)
    (run / "results.json").write_text('{"format_version": 1, "config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    rc = cli.main(["report", str(tmp_path / "runs"), "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and "RecursionError" not in err
    assert f"{run / 'results.json'}" in err and "nested" in err


def test_half_right_real_against_null_free_runs_still_compares(tmp_path):
    rep = write_report([_runs(tmp_path / "runs", HALF, HALF)], tmp_path / "report")
    assert all(math.isfinite(r["mean"]) for r in rep.tables["summary"].records)

"""ECG-QA over the real release files in ../shared/data/ecg-qa, joined to real PTB-XL segments."""

from __future__ import annotations

import json
import logging

import pytest

from ecg_bench.config import DataConfig
from ecg_bench.data.conversations import validate_item
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.data.mapped.ecg_qa import question_types
from ecg_bench.errors import ConfigError
from config_helpers import data_config

# The three single-verify questions of template/train/120000.json whose ECG is among ecg_id 6000-6009.
ANSWERABLE = {
    "ecg_qa_ptbxl-template-train-123657-0": ("6002", "Does this ECG show burst noise in lead aVF?", "no"),
    "ecg_qa_ptbxl-template-train-128221-0": ("6008", "Does this ECG show any kind of noises in lead aVF?", "no"),
    "ecg_qa_ptbxl-template-train-128910-0": ("6007", "Does this ECG show any kind of noises in lead V2?", "no"),
}
# template/: 10,000 single-verify (train/120000) + 7,539 + 4,663 + 2,146 comparison questions
N_TEMPLATE, N_SINGLE_VERIFY = 24348, 10000


def _cfg(shared_data, **kw) -> DataConfig:
    return data_config(source="ptbxl", mapped="ecg_qa_ptbxl", mapped_dir=str(shared_data / "ecg-qa"), **kw)


def test_answerable_questions_join_their_segments(ptbxl_store, shared_data):
    items = MAPPED.get("ecg_qa_ptbxl")(ptbxl_store, _cfg(shared_data, qa_variant="template", mapped_segments="first"))
    assert {it["id"] for it in items} == set(ANSWERABLE)
    patient_of = {row["record_id"]: row["patient_id"] for row in ptbxl_store.index}
    for it in items:
        rid, question, answer = ANSWERABLE[it["id"]]
        assert it["segment_ids"] == ptbxl_store.by_record(rid)[:1]
        assert it["messages"] == [{"role": "user", "content": f"<ecg>\n{question}"}, {"role": "assistant", "content": answer}]
        assert it["patient_id"] == patient_of[rid] and it["source"] == "ecg_qa_ptbxl"
        assert it["meta"]["question_type"] == "single-verify" and it["meta"]["record_ids"] == [rid]
        validate_item(it, len(ptbxl_store))
    assert patient_of["6002"] == "7588"  # ptbxl_database.csv: ecg_id 6002 -> patient_id 7588.0

    report = items.reports[0].to_dict()
    assert report["entries"] == N_TEMPLATE and report["items"] == 3
    assert report["skipped"] == {"filtered": N_TEMPLATE - N_SINGLE_VERIFY, "missing_from_store": N_SINGLE_VERIFY - 3}
    missing = set(report["record_ids"]["missing_from_store"])
    assert "3637" in missing and not missing & {"6002", "6007", "6008"}


def test_all_segments_and_both_variants(ptbxl_store, shared_data):
    items = MAPPED.get("ecg_qa_ptbxl")(ptbxl_store, _cfg(shared_data))  # defaults: both variants, all segments
    assert len(items) == 3 * 2 * 5 and len({it["id"] for it in items}) == 30
    para = [it for it in items if it["meta"]["variant"] == "paraphrased" and it["meta"]["sample_id"] == 123657]
    assert [it["segment_ids"] for it in para] == [[s] for s in ptbxl_store.by_record("6002")]
    assert [it["meta"]["segment_indices"] for it in para] == [[k] for k in range(5)]
    assert para[0]["messages"][0]["content"] == "<ecg>\nCan burst noise be detected in lead aVF based on the ECG results?"


def test_comparison_question_gets_one_marker_per_ecg(ptbxl_store, shared_data, tmp_path):
    entry = {"template_id": 68, "question_id": 5341, "sample_id": 80001, "question_type": "comparison_consecutive-query",
             "attribute_type": "numeric_feature", "question": "What numeric features changed?",
             "answer": ["qrs duration", "rr interval"], "ecg_id": [6001, 6003], "attribute": None}  # fmt: skip
    (tmp_path / "ptbxl" / "template" / "test").mkdir(parents=True)
    (tmp_path / "ptbxl" / "template" / "test" / "80000.json").write_text(json.dumps([entry]))
    cfg = data_config(mapped="ecg_qa_ptbxl", mapped_dir=str(tmp_path), qa_variant="template", question_types=["comparison_consecutive-query"])
    items = MAPPED.get("ecg_qa_ptbxl")(ptbxl_store, cfg)
    first, second = ptbxl_store.by_record("6001"), ptbxl_store.by_record("6003")
    assert [it["segment_ids"] for it in items] == [[a, b] for a, b in zip(first, second)]
    it = items[0]
    assert it["messages"][0]["content"] == "<ecg>\n<ecg>\nWhat numeric features changed?"
    assert it["messages"][1]["content"] == "qrs duration rr interval"  # original order, joined by a space
    rows = [ptbxl_store.index[s] for s in it["segment_ids"]]
    assert it["meta"]["patient_ids"] == list(dict.fromkeys(r["patient_id"] for r in rows))


def test_mimic_version_joins_study_ids(make_store, shared_data):
    store = make_store("mimic_iv_ecg", [("43402541", "p1"), ("41006988", "p2"), ("40518667", "p3")])
    cfg = data_config(mapped="ecg_qa_ptbxl", mapped_dir=str(shared_data / "ecg-qa"), question_types=["comparison_irrelevant-query"],
                     qa_variant="paraphrased", mapped_segments="first")  # fmt: skip
    items = MAPPED.get("ecg_qa_mimic_iv_ecg")(store, cfg)
    assert len(items) == 1 and items[0]["segment_ids"] == [store.by_record("43402541")[0], store.by_record("41006988")[0]]
    assert items[0]["meta"]["patient_ids"] == ["p1", "p2"] and items[0]["messages"][1]["content"] == "none"
    report = items.reports[0].to_dict()
    assert report["skipped"]["missing_from_store"] == 4364 - 1
    assert "49520309" in report["record_ids"]["missing_from_store"]  # 40518667's partner is not in the store


def test_question_types_and_store_checked(ptbxl_store, make_store, shared_data):
    assert question_types(DataConfig()) == ["single-verify", "single-choose", "single-query"]
    assert question_types(data_config(mapped="ecg_qa_ptbxl", question_types=["verify", "comparison_irrelevant-verify"])) == [
        "single-verify", "comparison_irrelevant-verify"]  # fmt: skip
    with pytest.raises(ConfigError, match="single-whatever"):
        question_types(data_config(mapped="ecg_qa_ptbxl", question_types=["single-whatever"]))
    with pytest.raises(ConfigError, match="holds 'csn'"):
        MAPPED.get("ecg_qa_ptbxl")(make_store("csn", [("JS20001", "p1")]), _cfg(shared_data))


@pytest.fixture()
def restore_logging():
    """cli.main configures the package logger (own handler, no propagation); put it back for caplog users."""
    logger = logging.getLogger("ecg_bench")
    saved = list(logger.handlers), logger.propagate, logger.level
    yield
    logger.handlers[:], logger.propagate = saved[0], saved[1]
    logger.setLevel(saved[2])


def test_data_command_end_to_end_with_hf_round_trip(shared_data, tmp_path, capsys, restore_logging):
    """`ecg-bench data` on the real PTB-XL records and ECG-QA files: folds, report, HF export, re-import."""
    from ecg_bench import cli

    common = ["--data.source", "ptbxl", "--data.data_dir", str(shared_data / "ptbxl"), "--data.num_folds", "3"]
    out = tmp_path / "run"
    mapped = ["--data.mapped", "ecg_qa_ptbxl", "--data.mapped_dir", str(shared_data / "ecg-qa"), "--data.mapped.qa_variant", "template"]
    assert cli.main(["data", *common, *mapped, "--data.export_hf", str(out / "hf"), "--output_dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ecg_qa_ptbxl: 24348 entries -> 15 conversations" in printed and "'missing_from_store': 9997" in printed
    folds = json.loads((out / "folds.json").read_text())
    assert folds["patient_disjoint"] and len(folds["fold_of_item"]) == 15 and set(folds["fold_of_item"].values()) == {0, 1, 2}
    report = json.loads((out / "mapping_report.json").read_text())["datasets"][0]
    assert report["items"] == 15 and len(report["record_ids"]["missing_from_store"]) > 4000

    back = tmp_path / "back"
    assert cli.main(["data", *common, "--data.hf_dataset", str(out / "hf"), "--output_dir", str(back)]) == 0
    assert json.loads((back / "folds.json").read_text())["fold_of_item"] == folds["fold_of_item"]


def test_entries_with_ecg_path_from_ecgqa_mapping_scripts(ptbxl_store, tmp_path):
    """ECG-QA's own mapping scripts add ``ecg_path`` (paths into the download); those entries join too."""
    entry = {"template_id": 1, "question_id": 1, "sample_id": 5, "question_type": "single-query", "attribute_type": "scp_code",
             "question": "What diagnosis?", "answer": ["non-diagnostic t abnormalities"],
             "ecg_path": ["/data/ptb-xl/records500/06000/06005_hr"]}  # fmt: skip
    folder = tmp_path / "paraphrased" / "valid"
    folder.mkdir(parents=True)
    (folder / "0.json").write_text(json.dumps([entry, {**entry, "sample_id": 6, "ecg_path": ["/elsewhere/x.dat"]}]))
    items = MAPPED.get("ecg_qa_ptbxl")(ptbxl_store, data_config(mapped="ecg_qa_ptbxl", mapped_dir=str(tmp_path), mapped_segments="first"))
    assert [it["segment_ids"] for it in items] == [ptbxl_store.by_record("6005")[:1]]
    assert items.reports[0].to_dict()["skipped"] == {"unresolved_reference": 1}


class _Lines(logging.Handler):
    """Every record of one logger at INFO and above (the package logger may not propagate to caplog)."""

    def __init__(self, name: str):
        super().__init__(logging.INFO)
        self.logger, self.lines = logging.getLogger(name), []

    def emit(self, record):
        self.lines.append((record.levelno, record.getMessage()))

    def __enter__(self):
        self.level = self.logger.level
        self.logger.addHandler(self)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level)


def test_each_entry_is_read_correctly_or_skipped_by_name(ptbxl_store, tmp_path):
    """A string answer is one answer; entries the mapper cannot read are counted (bad_entry) with their place and
    why, never a traceback, a made-up answer or a truncated ecg_id; the log shows every reason and why."""
    good = {"template_id": 1, "question_id": 7, "sample_id": 1, "question_type": "single-verify",
            "attribute_type": "noise", "question": "Does this ECG show baseline drift?", "answer": "yes",
            "ecg_id": [6002], "attribute": ["baseline drift"]}  # fmt: skip
    entries = [
        good,
        {**good, "sample_id": 2, "answer": None},  # missing answer
        {k: v for k, v in {**good, "sample_id": 3}.items() if k != "answer"},
        {**good, "sample_id": 4, "ecg_id": [6002.7]},  # not an ecg_id: was read as 6002
        {k: v for k, v in {**good, "sample_id": 5}.items() if k != "question"},
        {k: v for k, v in good.items() if k != "sample_id"},
        ["not", "an", "entry"],
        {**good, "ecg_id": [6003]},  # sample_id 1 again in the same variant/split
        {**good, "sample_id": 9, "answer": ["no"], "ecg_id": [6004.0]},  # 6004.0 is the whole number 6004
    ]
    (tmp_path / "template" / "train").mkdir(parents=True)
    (tmp_path / "template" / "train" / "0.json").write_text(json.dumps(entries))
    cfg = data_config(mapped="ecg_qa_ptbxl", mapped_dir=str(tmp_path), qa_variant="template", question_types=["verify"], mapped_segments="first")
    with _Lines("ecg_bench.data.mapped.joining") as log:
        items = MAPPED.get("ecg_qa_ptbxl")(ptbxl_store, cfg)
    assert [(it["meta"]["sample_id"], it["messages"][1]["content"]) for it in items] == [(1, "yes"), (9, "no")]
    assert items[0]["meta"]["answers"] == ["yes"] and items[1]["meta"]["record_ids"] == ["6004"]
    report = items.reports[0].to_dict()
    assert report["entries"] == 9 and report["skipped"] == {"bad_entry": 6, "duplicate_entry": 1}
    assert report["details"]["bad_entry"] == {
        "no 'answer'": 2,
        "'ecg_id' holds a number that is not a whole number (e.g. 6002.7)": 1,
        "no 'question'": 1,
        "no 'sample_id'": 1,
        "entry is a list, expected a JSON object": 1,
    }
    assert report["record_ids"]["bad_entry"] == [f"template/train/0.json[{i}]" for i in range(1, 7)]
    assert report["record_ids"]["duplicate_entry"] == ["template/train/0.json[7]"]
    summary = [msg for level, msg in log.lines if level == logging.INFO and "entries ->" in msg]
    assert summary == ["ecg_qa_ptbxl: 9 entries -> 2 items on the ptbxl store; skipped {'bad_entry': 6, 'duplicate_entry': 1}"]
    why = next(msg for level, msg in log.lines if level >= logging.INFO and "(bad_entry)" in msg)
    assert "6 entries skipped (bad_entry)" in why and "2 x no 'answer'" in why and "1 x no 'sample_id'" in why

"""ECG-Chat, PULSE and GEM conversation files (faithful small fixtures in their published formats)
joined to stores whose record ids follow the base datasets' conventions."""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest

from ecg_bench.config import DataConfig
from ecg_bench.data.conversations import validate_item
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.data.mapped.joining import convert_turns, resolve_ecg_ref
from ecg_bench.errors import ConfigError, DataError
from config_helpers import data_config


@pytest.mark.parametrize(
    "ref, hint, expected",
    [
        ("files/p1000/p10000032/s40689238/40689238", "", ("mimic_iv_ecg", "40689238")),
        ("mimic_v4/files/p1000/p10000032/s40689238/40689238-0.png", "", ("mimic_iv_ecg", "40689238")),
        ("files_p1000_p10000032_s40689238_40689238", "", ("mimic_iv_ecg", "40689238")),
        ("ptb-xl/records500/06000/06002_hr-0.png", "", ("ptbxl", "6002")),
        ("ecg_ptbxl_benchmarking/data/ptbxl/records500/06000/06002_hr", "", ("ptbxl", "6002")),
        ("records500_06000_06002_hr", "", ("ptbxl", "6002")),
        ("06002_hr", "ptbxl", ("ptbxl", "6002")),
        ("code15_v4/1169160-0.png", "", ("code15", "1169160")),
        ("1169160", "code15", ("code15", "1169160")),
        ("cpsc2018/g1/A1980", "", ("cpsc2018", "A1980")),
        ("A1980-0.png", "", ("cpsc2018", "A1980")),
        ("champan-shaoxing/WFDBRecords/20/200/JS20001", "", ("csn", "JS20001")),
        ("georgia/E00001", "", ("g12ec", "E00001")),
        ("mmmu/some_picture.png", "", None),
        ("", "", None),
    ],
)
def test_resolve_ecg_ref(ref, hint, expected):
    assert resolve_ecg_ref(ref, hint) == expected


def test_convert_turns():
    turns = [{"from": "human", "value": "<image>\nWhat does this image show?"}, {"from": "gpt", "value": "Sinus rhythm."},
             {"from": "human", "value": "Any ST changes?"}, {"from": "gpt", "value": ["No ", "ST changes."]}]  # fmt: skip
    assert convert_turns(turns) == [
        {"role": "user", "content": "<ecg>\nWhat does this signal show?"},
        {"role": "assistant", "content": "Sinus rhythm."},
        {"role": "user", "content": "Any ST changes?"},
        {"role": "assistant", "content": "No ST changes."},
    ]
    with pytest.raises(DataError, match="unknown speaker"):
        convert_turns([{"from": "doctor", "value": "hi"}])
    with pytest.raises(DataError, match="end with an assistant"):
        convert_turns([{"from": "human", "value": "<ecg>\nhi"}])


def _chat(question: str, answer: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": f"<ecg>\n{question}"}, {"from": "gpt", "value": answer}]


def test_ecg_chat_files_join_mimic_studies(make_store, tmp_path):
    store = make_store("mimic_iv_ecg", [("40689238", "10000032"), ("44458630", "10000032"), ("41256771", "10000117")])
    pretrain = [
        {"id": "a", "ecg": "files/p1000/p10000032/s40689238/40689238", "conversations": _chat("Describe.", "Sinus rhythm.")},
        {"id": "b", "ecg": "files/p1000/p10000117/s41256771/41256771", "conversations": _chat("Describe.", "AF.")},
        {"id": "c", "ecg": "files/p1999/p19999987/s49999999/49999999", "conversations": _chat("Describe.", "Normal ECG.")},
    ]  # fmt: skip
    (tmp_path / "pretrain_mimic.json").write_text(json.dumps(pretrain))
    (tmp_path / "ecg_instruct_45k.json").write_text(json.dumps(pretrain[:1]))
    cfg = data_config(mapped_dir=str(tmp_path), mapped_segments="all")
    items = MAPPED.get("pretrain_mimic")(store, cfg)
    assert [it["id"] for it in items] == ["pretrain_mimic-000000-0", "pretrain_mimic-000000-1",
                                          "pretrain_mimic-000001-0", "pretrain_mimic-000001-1"]  # fmt: skip
    assert [it["segment_ids"] for it in items] == [[s] for r in ("40689238", "41256771") for s in store.by_record(r)]
    assert items[2]["messages"] == [{"role": "user", "content": "<ecg>\nDescribe."},
                                    {"role": "assistant", "content": "AF."}]  # fmt: skip
    assert items[2]["patient_id"] == "10000117" and items[2]["meta"]["source_id"] == "b"
    report = items.reports[0].to_dict()
    assert report["skipped"] == {"missing_from_store": 1} and report["record_ids"]["missing_from_store"] == ["49999999"]
    assert len(MAPPED.get("ecg_instruct_45k")(store, cfg)) == 2


def test_pulse_instruct_counts_other_base_datasets(ptbxl_store, tmp_path):
    entries = [
        {"id": "p1", "image": "ptb-xl/records500/06000/06002_hr-0.png", "conversations": _chat("Rhythm?", "Sinus.")},
        {"id": "p2", "image": "mimic_v4/files/p1000/p10000032/s40689238/40689238-0.png", "conversations": _chat("Rate?", "70")},
        {"id": "p3", "image": "code15_v4/1169160-0.png", "conversations": _chat("Axis?", "Normal.")},
        {"id": "p4", "image": "ptb-xl/records500/06000/06005_hr-0.png", "conversations": [{"from": "gpt", "value": "x"}]},
        {"id": "p5", "image": "ptb-xl/records500/21000/21837_hr-0.png", "conversations": _chat("Rhythm?", "AF.")},
    ]  # fmt: skip
    (tmp_path / "ECGInstruct.json").write_text(json.dumps(entries))
    items = MAPPED.get("ecg_instruct_pulse")(ptbxl_store, data_config(mapped_dir=str(tmp_path), mapped_segments="first"))
    assert [it["meta"]["source_id"] for it in items] == ["p1"]
    assert items[0]["segment_ids"] == ptbxl_store.by_record("6002")[:1]
    report = items.reports[0].to_dict()
    assert report["skipped"] == {"bad_conversation": 1, "missing_from_store": 1, "other_base_dataset": 2}
    assert report["other_base_datasets"] == {"code15": 1, "mimic_iv_ecg": 1}
    assert report["record_ids"]["missing_from_store"] == ["21837"]


def test_pulse_ecgbench_parquet_download(ptbxl_store, tmp_path):
    """ECGBench as published on the hub: <subset>/test-*.parquet with image_path and conversations."""
    rows = {
        "ptb-test": [{"id": "b1", "image_path": "ptb-xl/records500/06000/06004_hr-0.png",
                      "conversations": _chat("Which diagnosis?", "B")}],
        "ecgqa-test": [{"id": "b2", "image_path": "ptb-xl/records500/06000/06001_hr-0.png",
                        "conversations": [{"from": "human", "value": ["<image>\n", "Is there noise?"]},
                                          {"from": "gpt", "value": ["no"]}]}],
        "csn-test-no-cot": [{"id": "b3", "image_path": "csn/JS20001-0.png", "conversations": _chat("Rhythm?", "SB")}],
        "mmmu-ecg": [{"id": "b4", "image_path": "mmmu/q1.png", "conversations": _chat("?", "A")}],
    }  # fmt: skip
    for subset, data in rows.items():
        (tmp_path / "ECGBench" / subset).mkdir(parents=True)
        pd.DataFrame(data).to_parquet(tmp_path / "ECGBench" / subset / "test-00000-of-00001.parquet")
    items = MAPPED.get("ecg_bench_pulse")(ptbxl_store, data_config(mapped_dir=str(tmp_path), mapped_segments="first"))
    by_subset = {it["meta"]["subset"]: it for it in items}
    assert set(by_subset) == {"ptb-test", "ecgqa-test"}
    assert by_subset["ecgqa-test"]["messages"] == [{"role": "user", "content": "<ecg>\nIs there noise?"},
                                                   {"role": "assistant", "content": "no"}]  # fmt: skip
    assert by_subset["ptb-test"]["segment_ids"] == ptbxl_store.by_record("6004")[:1]
    report = items.reports[0].to_dict()
    assert report["entries"] == 4 and report["skipped"] == {"filtered": 1, "other_base_dataset": 1}
    direct = MAPPED.get("ecg_bench_pulse")(ptbxl_store, data_config(mapped_dir=str(tmp_path / "ECGBench")))
    assert len(direct) == 2 * 5  # mapped_dir = the ECGBench folder itself; all 5 segments of each record


def test_gem_grounding(ptbxl_store, tmp_path):
    entries = [
        {"id": "g1", "ecg": "ecg_ptbxl_benchmarking/data/ptbxl/records500/06000/06009_hr", "image": "x.png",
         "conversations": _chat("Interpret this ECG.", "Sinus rhythm; QRS 90 ms in lead II.")},
        {"id": "g2", "ecg": "mimic-iv/files/p1000/p10000032/s40689238/40689238", "conversations": _chat("Interpret.", "AF")},
    ]  # fmt: skip
    (tmp_path / "ECG_Grounding_30k.json").write_text(json.dumps(entries))
    items = MAPPED.get("ecg_grounding")(ptbxl_store, data_config(mapped_dir=str(tmp_path)))
    assert [it["segment_ids"] for it in items] == [[s] for s in ptbxl_store.by_record("6009")]
    for it in items:
        validate_item(it, len(ptbxl_store))
    assert items.reports[0].to_dict()["other_base_datasets"] == {"mimic_iv_ecg": 1}


def test_missing_download_is_named(ptbxl_store, tmp_path):
    with pytest.raises(DataError, match="ECG_Grounding_30k.json"):
        MAPPED.get("ecg_grounding")(ptbxl_store, data_config(mapped_dir=str(tmp_path)))
    with pytest.raises(ConfigError, match="data.mapped_dir is empty"):
        MAPPED.get("pretrain_mimic")(ptbxl_store, DataConfig())


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("test_images/ptb_test_v4/07190_hr-0.png", ("ptbxl", "7190")),  # PULSE's test images: <record stem>-<image index>
        ("test_images/cpsc_test_v4/A0001-0.png", ("cpsc2018", "A0001")),
        ("test_images/csn_test_v4/JS00001-0.png", ("csn", "JS00001")),
        ("test_images/code15_test_v4/1169160-0.png", ("code15", "1169160")),
        ("test_images/g12_test_v4/E00001-0.png", ("g12ec", "E00001")),
    ],
)
def test_resolve_pulse_test_images(ref, expected):
    assert resolve_ecg_ref(ref) == expected


class _Lines(logging.Handler):
    def __init__(self):
        super().__init__(logging.INFO)
        self.logger, self.lines = logging.getLogger("ecg_bench.data.mapped.joining"), []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def __enter__(self):
        self.level = self.logger.level
        self.logger.addHandler(self)
        self.logger.setLevel(logging.INFO)
        return self

    def __exit__(self, *exc):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level)


# PULSE's PTB-XL report-generation test file as published: no "name", turns under "conversation", the ECG named
# by its rendered image "<PTB-XL file stem>-<image index>.png" in the test set's folder.
PULSE_REPORT_TEST = [
    {"id": "ptb-report-0", "image": "test_images/ptb_test_v4/06002_hr-0.png",
     "conversation": [{"from": "human", "value": "<image>\nPlease write a clinical report based on this ECG image."},
                      {"from": "gpt", "value": "Sinus rhythm. Normal ECG."}]},
    {"id": "ptb-report-1", "image": "test_images/ptb_test_v4/06005_hr-0.png",
     "conversation": [{"from": "human", "value": "<image>\nPlease write a clinical report based on this ECG image."},
                      {"from": "gpt", "value": "Sinus rhythm. Non-diagnostic T abnormalities."}]},
    {"id": "ptb-report-2", "image": "test_images/ptb_test_v4/07190_hr-0.png",
     "conversation": [{"from": "human", "value": "<image>\nPlease write a clinical report based on this ECG image."},
                      {"from": "gpt", "value": "Atrial fibrillation."}]},
]  # fmt: skip


@pytest.mark.parametrize("mapped", ["ecg_bench_pulse", "ecg_instruct_pulse"])
def test_pulse_published_test_file(ptbxl_store, tmp_path, mapped):
    path = tmp_path / "ptb-test-report.json"
    path.write_text(json.dumps(PULSE_REPORT_TEST))
    with _Lines() as log:
        items = MAPPED.get(mapped)(ptbxl_store, data_config(mapped_dir=str(path), mapped_segments="first"))
    assert [(it["meta"]["source_id"], it["segment_ids"]) for it in items] == [
        ("ptb-report-0", ptbxl_store.by_record("6002")[:1]),
        ("ptb-report-1", ptbxl_store.by_record("6005")[:1]),
    ]
    assert items[0]["messages"] == [
        {"role": "user", "content": "<ecg>\nPlease write a clinical report based on this ECG signal."},
        {"role": "assistant", "content": "Sinus rhythm. Normal ECG."},
    ]
    assert items[0]["meta"]["subset"] == "ptb_test_v4"
    report = items.reports[0].to_dict()
    assert report["entries"] == 3 and report["skipped"] == {"missing_from_store": 1}
    assert report["record_ids"]["missing_from_store"] == ["7190"]
    assert f"{mapped}: 3 entries -> 2 items on the ptbxl store; skipped {{'missing_from_store': 1}}" in log.lines


def test_log_agrees_with_the_report(ptbxl_store, tmp_path):
    """Every entry is counted before the summary is logged: the log says what mapping_report.json says."""
    entries = [
        {"name": "ptb-test", "image_path": "ptb-xl/records500/06000/06004_hr-0.png", "conversations": _chat("Q?", "A")},
        {"name": "mmmu-ecg", "image_path": "mmmu/q1.png", "conversations": _chat("?", "A")},
        {"name": "arena", "image_path": "arena/q2.png", "conversations": _chat("?", "B")},
        "not an entry",
        {"name": "ptb-test", "image_path": "ptb-xl/records500/06000/06001_hr-0.png",
         "conversations": [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt"}]},
    ]  # fmt: skip
    (tmp_path / "ecg_bench_pulse.json").write_text(json.dumps(entries))
    with _Lines() as log:
        items = MAPPED.get("ecg_bench_pulse")(ptbxl_store, data_config(mapped_dir=str(tmp_path), mapped_segments="first"))
    report = items.reports[0].to_dict()
    assert len(items) == 1 and report["skipped"] == {"bad_conversation": 1, "bad_entry": 1, "filtered": 2}
    assert report["details"] == {
        "bad_conversation": {"turn 1: 'value' is null, expected a string": 1},
        "bad_entry": {"entry is a string, expected a JSON object": 1},
    }
    assert log.lines[0] == (
        "ecg_bench_pulse: 5 entries -> 1 items on the ptbxl store; skipped {'bad_conversation': 1, 'bad_entry': 1, 'filtered': 2}"
    )
    assert any("1 entries skipped (bad_conversation)" in line and "'value' is null" in line for line in log.lines)

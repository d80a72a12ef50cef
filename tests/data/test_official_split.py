"""data.split official: ECG-QA's own train / valid / test split beside the patient-disjoint folds, its patient
overlaps reported, on the real ECG-QA entries and real PTB-XL records of ../shared/data."""

from __future__ import annotations

import json
import logging

import pytest

from ecg_bench.config import DataConfig, MappedOptions, RunConfig, choice
from ecg_bench.data.splits import official_split
from ecg_bench.errors import DataError


def _items(spec):
    """``[(id, split, [patients])]`` -> minimal items."""
    return [{"id": i, "patient_id": ps[0], "meta": {"split": s, "patient_ids": ps}} for i, s, ps in spec]


def test_official_split_parts_and_overlap_report():
    items = _items([("a", "train", ["p1"]), ("b", "train", ["p2"]), ("c", "valid", ["p3"]), ("d", "test", ["p4"]),
                    ("e", "test", ["p5", "p2"]), ("f", "test", ["p6"])])  # fmt: skip
    parts, report = official_split(items)
    assert [[it["id"] for it in parts[s]] for s in ("train", "valid", "test")] == [["a", "b"], ["c"], ["d", "e", "f"]]
    assert report["items"] == {"train": 2, "valid": 1, "test": 3} and report["patients"]["test"] == 4
    assert report["overlap"]["train-test"] == {"patients": 1, "items": 1, "patient_ids": ["p2"]}
    assert report["overlap"]["valid-test"]["patients"] == 0 and not report["patient_disjoint"]
    _, clean = official_split(items[:4])
    assert clean["patient_disjoint"]
    with pytest.raises(DataError, match=r"1 item\(s\) carry no release split .*\['g'\].*use data.split folds"):
        official_split(items + [{"id": "g", "patient_id": "p9", "meta": {}}])


def test_official_split_options_are_checked():
    cfg = RunConfig()
    cfg.data.split = "paper"
    assert "data.split must be one of folds, official, got 'paper'" in cfg.problems()
    cfg = RunConfig(data=DataConfig(split="official", mapped=choice(MappedOptions, "ecg_qa_ptbxl", qa_splits=["train", "valid"])))
    assert any("data.mapped.qa_splits must name both" in p for p in cfg.problems())
    cfg = RunConfig(data=DataConfig(split="official"))
    cfg.train.val_fraction = 0.1
    assert any("release's valid split is the held-out set" in p for p in cfg.problems())


def _entry(base, sample_id, ecg_id):
    return {**base, "sample_id": sample_id, "ecg_id": [ecg_id]}


@pytest.fixture()
def release(shared_data, tmp_path):
    """An ECG-QA layout built from the REAL template entries: the three answerable train entries as released
    (ecg_id 6002, 6007, 6008), and the same question asked about other real records in valid / test; one test
    entry asks about ecg 6002 again, so train and test share that patient (7588)."""
    real = json.loads((shared_data / "ecg-qa/ptbxl/template/train/120000.json").read_text())
    train = [e for e in real if e["ecg_id"][0] in (6002, 6007, 6008)]
    assert len(train) == 3
    root = tmp_path / "ecgqa" / "ptbxl" / "template"
    layout = {
        "train": train,
        "valid": [_entry(train[0], 900001, 6001)],
        "test": [_entry(train[1], 900002, 6005), _entry(train[1], 900003, 6009), _entry(train[2], 900004, 6002)],
    }
    for split, entries in layout.items():
        (root / split).mkdir(parents=True)
        (root / split / "1.json").write_text(json.dumps(entries))
    return tmp_path / "ecgqa"


@pytest.fixture()
def quiet(monkeypatch):
    package_log = logging.getLogger("ecg_bench")
    monkeypatch.setattr(package_log, "handlers", list(package_log.handlers))


def test_data_command_with_the_official_split_reports_its_overlap(shared_data, release, tmp_path, capsys, quiet):
    from ecg_bench import cli

    out = tmp_path / "run"
    args = ["data", "--data.source", "ptbxl", "--data.data_dir", str(shared_data / "ptbxl"), "--data.mapped", "ecg_qa_ptbxl",
            "--data.mapped_dir", str(release), "--data.mapped.qa_variant", "template", "--data.mapped_segments", "first",
            "--data.split", "official", "--output_dir", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    captured = capsys.readouterr()
    assert "official split: 3 train, 3 test conversations, 1 held out for validation" in captured.out
    assert "split and patient overlaps (see overlap)" in captured.out
    report = json.loads((out / "official_split.json").read_text())
    assert report["split"] == "official" and report["items"] == {"train": 3, "valid": 1, "test": 3}
    assert report["overlap"]["train-test"] == {"patients": 1, "items": 1, "patient_ids": ["7588"]}  # ecg 6002's patient
    assert not report["patient_disjoint"] and "ecg_qa_ptbxl-template-test-900004-0" in report["item_ids"]["test"]
    assert "train-test share 1 patient(s)" in captured.err


def test_the_real_release_at_hand_has_no_answerable_test_item(shared_data, tmp_path, capsys, quiet):
    """The shared data holds 10 PTB-XL records; the release's test questions about them also need other ECGs, so the
    official test split is empty there: a clear error, exit 2, before any training."""
    from ecg_bench import cli

    args = ["run", "--data.source", "ptbxl", "--data.data_dir", str(shared_data / "ptbxl"), "--data.mapped", "ecg_qa_ptbxl",
            "--data.mapped_dir", str(shared_data / "ecg-qa"), "--data.split", "official", "--model.llm", "tiny",
            "--output_dir", str(tmp_path / "run")]  # fmt: skip
    assert cli.main(args) == 2
    assert "data.split official: the test split has no items joined to the store" in capsys.readouterr().err


@pytest.mark.slow
def test_a_run_on_the_official_split_trains_on_train_and_validates_on_valid(shared_data, release, tmp_path, quiet):
    from ecg_bench import cli

    out = tmp_path / "run"
    args = ["run", "--data.source", "ptbxl", "--data.data_dir", str(shared_data / "ptbxl"), "--data.mapped", "ecg_qa_ptbxl",
            "--data.mapped_dir", str(release), "--data.mapped.qa_variant", "template", "--data.mapped_segments", "first",
            "--data.split", "official", "--data.mapped.question_types", "verify", "--model.llm", "tiny",
            "--model.encoder.dim", "32", "--model.encoder.num_tokens", "2", "--train.max_steps", "2", "--train.batch_size", "2",
            "--train.device", "cpu", "--eval.conditions", "real", "--eval.max_new_tokens", "2", "--output_dir", str(out)]  # fmt: skip
    assert cli.main(args) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["data"]["train_items"] == 3 and res["data"]["test_items"] == 3 and res["training"]["val_items"] == 1
    assert [r["step"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [1, 2]
    assert "val_loss" in json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    record = json.loads((out / "checkpoints/final/training_data.json").read_text())
    assert record["split"] == "official" and record["num_items"] == 3
    assert res["baselines"]["majority"]["answer_by_type"]["single-verify"] == "no"

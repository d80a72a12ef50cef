"""Mixing several mapped datasets over one store."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecg_bench.config import DataConfig
from ecg_bench.data.mix import build_items, mix_items
from ecg_bench.data.record import LEADS, ECGRecord
from ecg_bench.data.splits import check_folds, patient_folds
from ecg_bench.data.store import build_store
from ecg_bench.errors import ConfigError, DataError
from config_helpers import data_config

ECG_IDS = [6000 + k for k in range(10)]


def _turns(q: str, a: str) -> list[dict[str, str]]:
    return [{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}]


@pytest.fixture()
def ptbxl_like(tmp_path):
    """A store named ptbxl with PTB-XL record ids (2 records per patient, 4 s = 2 segments each) and
    PULSE / GEM files referencing them."""
    rng = np.random.default_rng(0)
    recs = [ECGRecord(str(e), f"p{e % 5}", rng.normal(0, 0.1, (len(LEADS), 1000)).astype(np.float32), 250) for e in ECG_IDS]
    store = build_store(recs, tmp_path / "store", "ptbxl", 250, 500)
    pulse = [{"id": f"i{e}", "image": f"ptb-xl/records500/06000/{e:05d}_hr-0.png", "conversations": _turns("Rhythm?", "Sinus.")}
             for e in ECG_IDS]  # fmt: skip
    gem = [{"id": f"g{e}", "ecg": f"ecg_ptbxl_benchmarking/data/ptbxl/records500/06000/{e:05d}_hr",
            "conversations": _turns("Interpret.", "Normal ECG.")} for e in ECG_IDS[:4]]  # fmt: skip
    (tmp_path / "ECGInstruct.json").write_text(json.dumps(pulse))
    (tmp_path / "ECG_Grounding_30k.json").write_text(json.dumps(gem))
    return store, str(tmp_path)


def test_mix_two_datasets_then_fold(ptbxl_like):
    store, mapped_dir = ptbxl_like
    cfg = data_config(mix=["ecg_instruct_pulse", "ecg_grounding"], mix_max_items=[0, 3], mapped_dir=mapped_dir, seed=1)
    items = build_items(store, cfg)
    sources = [it["source"] for it in items]
    assert sources.count("ecg_instruct_pulse") == 20 and sources.count("ecg_grounding") == 3
    assert sources == sorted(sources, key=["ecg_instruct_pulse", "ecg_grounding"].index)  # mix order kept
    assert len({it["id"] for it in items}) == len(items)
    assert [r.name for r in items.reports] == ["ecg_instruct_pulse", "ecg_grounding"]
    folds = patient_folds(items, 5, seed=0)
    check_folds(items, folds)
    for p in {it["patient_id"] for it in items}:  # a patient's items of both datasets share one fold
        assert len({f for it, f in zip(items, folds) if it["patient_id"] == p}) == 1
    capped_again = build_items(store, cfg)
    assert [it["id"] for it in capped_again] == [it["id"] for it in items]  # the cap is seeded


def test_single_mapped_is_a_mix_of_one(ptbxl_like):
    store, mapped_dir = ptbxl_like
    items = build_items(store, data_config(mapped="ecg_grounding", mapped_dir=mapped_dir))
    assert len(items) == 8 and items.reports[0].name == "ecg_grounding"


def test_part_on_another_base_dataset_is_refused(ptbxl_like, tmp_path):
    store, mapped_dir = ptbxl_like
    mimic = [{"id": "m", "ecg": "files/p1000/p10000032/s40689238/40689238", "conversations": _turns("Describe.", "AF")}]
    (tmp_path / "ecg_instruct_45k.json").write_text(json.dumps(mimic))
    cfg = data_config(mix=["ecg_instruct_pulse", "ecg_instruct_45k"], mapped_dir=mapped_dir)
    with pytest.raises(DataError, match=r"ecg_instruct_45k produced no items.*from mimic_iv_ecg: build a store"):
        build_items(store, cfg)


def test_mix_config_errors(ptbxl_like):
    store, mapped_dir = ptbxl_like
    with pytest.raises(ConfigError, match="more than once"):
        build_items(store, data_config(mix=["ecg_grounding", "ecg_grounding"], mapped_dir=mapped_dir))
    with pytest.raises(ConfigError, match="2 caps for 1"):
        build_items(store, data_config(mix=["ecg_grounding"], mix_max_items=[1, 2], mapped_dir=mapped_dir))
    a = [{"id": "x-1", "patient_id": "p"}]
    with pytest.raises(DataError, match="repeat item ids: x-1"):
        mix_items({"a": a, "b": a})

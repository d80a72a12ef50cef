"""Every worked example of docs/adding-a-component.md (the files in docs/examples/, included into that page) is
registered and used for real here. Each test loads its example as a module and puts every registry back as it
was afterwards, so the example components never leak into other tests."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "docs" / "examples"
PAGE = ROOT / "docs" / "adding-a-component.md"


def _registries() -> list:
    from ecg_bench.data.mapped.base import MAPPED
    from ecg_bench.data.sources.base import SOURCES
    from ecg_bench.evaluation.conditions import CONDITIONS
    from ecg_bench.evaluation.metrics import METRICS
    from ecg_bench.models.elm import ELMS
    from ecg_bench.models.encoders import ENCODERS, PRETRAINERS
    from ecg_bench.models.projection import PROJECTORS
    from ecg_bench.representations.base import REPRESENTATIONS

    return [SOURCES, MAPPED, REPRESENTATIONS, ENCODERS, PROJECTORS, ELMS, CONDITIONS, METRICS, PRETRAINERS]


@pytest.fixture
def load_example():
    """``load_example(stem)``: the module docs/examples/<stem>.py, imported (so registered); undone at teardown."""
    regs = _registries()
    saved = [(r, dict(r._items), dict(r.options_base._choice_registry)) for r in regs]
    loaded: list[str] = []

    def load(stem: str):
        name = f"ecg_bench_docs_example_{stem}"
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{stem}.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and draccus resolve the options' annotations through it
        loaded.append(name)
        spec.loader.exec_module(module)
        return module

    yield load
    for r, items, choices in saved:
        r._items.clear()
        r._items.update(items)
        r.options_base._choice_registry.clear()
        r.options_base._choice_registry.update(choices)
    for name in loaded:
        sys.modules.pop(name, None)


def test_every_example_is_on_the_page_and_tested():
    """Each example file is included into the page and has a test below; the page includes no missing file."""
    page = PAGE.read_text()
    included = set(re.findall(r'--8<-- "examples/([a-z0-9_]+)\.py"', page))
    files = {p.stem for p in EXAMPLES.glob("*.py")}
    assert files and included == files
    tests = {n.removeprefix("test_example_") for n in globals() if n.startswith("test_example_")}
    assert tests == files


def _ptbxl_as_csv(shared_data: Path, folder: Path) -> dict[str, dict]:
    """The real PTB-XL records of the reference data written as the csv_folder example reads them: one
    ``p<patient>_<ecg_id>.csv`` (header of lead names, mV) and its report in ``.txt``. Returns the rows by file stem."""
    import csv

    from ecg_bench.data.record import LEADS
    from ecg_bench.signals.io import read_wfdb

    folder.mkdir()
    rows = {}
    with open(shared_data / "ptbxl" / "ptbxl_database.csv", newline="") as f:
        for row in csv.DictReader(f):
            sig = read_wfdb(shared_data / "ptbxl" / row["filename_hr"]).signal
            assert sig.shape[0] == 12  # PTB-XL's rows are in the canonical order
            stem = f"p{int(float(row['patient_id']))}_{int(row['ecg_id']):05d}"
            np.savetxt(folder / f"{stem}.csv", sig.T, delimiter=",", header=",".join(LEADS), comments="", fmt="%.4f")
            (folder / f"{stem}.txt").write_text(row["report"])
            rows[stem] = row
    return rows


def test_example_source_csv_folder(load_example, shared_data, tmp_path):
    """The source lists and reads real records, skips a bad file with its reason, and `ecg-bench data` builds a store
    from it (with the report_qa example as its conversations)."""
    from ecg_bench import cli
    from ecg_bench.config import DataConfig, SourceOptions, choice
    from ecg_bench.data.conversations import load_jsonl
    from ecg_bench.data.sources.base import SOURCES

    load_example("source_csv_folder")
    load_example("mapped_report_qa")
    folder = tmp_path / "csv"
    rows = _ptbxl_as_csv(shared_data, folder)
    (folder / "p9_bad.csv").write_text("I,II\n0.1,0.2\n")
    source = SOURCES.get("csv_folder")(DataConfig(data_dir=str(folder), source=choice(SourceOptions, "csv_folder", fs=500.0)))
    records = list(source)  # the bad file is logged and skipped
    assert sorted(r.record_id for r in records) == sorted(rows) and len(rows) == 10
    first = records[0]
    assert first.signal.shape == (12, 5000) and first.fs == 500.0 and first.report == rows[first.record_id]["report"]
    assert first.patient_id == first.record_id.split("_")[0]
    with pytest.raises(Exception, match="expected the 12 leads") as bad:
        source.read("p9_bad.csv")
    assert bad.value.reason == "wrong leads"

    out = tmp_path / "run"
    assert cli.main(["data", "--data.source.type", "csv_folder", "--data.source.fs", "500", "--data.data_dir", str(folder),
                     "--data.mapped.type", "report_qa", "--data.num_folds", "2", "--output_dir", str(out)]) == 0  # fmt: skip
    items = load_jsonl(out / "report_qa.jsonl")
    assert len(items) == 50  # 10 records x 5 segments of 2 s (250 Hz), every record has a report
    assert {i["messages"][1]["content"] for i in items} == {r["report"].strip() for r in rows.values()}
    assert (out / "folds.json").is_file()


def test_example_mapped_report_qa(load_example, tiny_store):
    from ecg_bench.config import DataConfig, MappedOptions, choice
    from ecg_bench.data.dataset import ConversationDataset
    from ecg_bench.data.mapped.base import MAPPED
    from ecg_bench.representations.signal import SignalRepresentation

    load_example("mapped_report_qa")
    cfg = DataConfig(mapped=choice(MappedOptions, "report_qa", question="What does the report say?"))
    items = MAPPED.get("report_qa")(tiny_store, cfg)
    with_report = [row for row in tiny_store.index if row["report"].strip()]
    assert len(items) == len(with_report) > 0
    first = items[0]
    assert first["messages"][0]["content"] == "<ecg>\nWhat does the report say?"
    assert first["messages"][1]["content"] == tiny_store.index[first["segment_ids"][0]]["report"].strip()
    sample = ConversationDataset(items, tiny_store, SignalRepresentation())[0]
    assert sample["ecg"].shape == (1, 12, tiny_store.segment_len)


def test_example_representation_bandpass(load_example, tiny_store):
    from ecg_bench.config import RepresentationOptions, choice
    from ecg_bench.representations.base import build_representation

    load_example("representation_bandpass")
    rep = build_representation(choice(RepresentationOptions, "bandpass", low_hz=0.5, high_hz=40.0), fs=tiny_store.fs)
    seg = tiny_store.signal(0)
    out = rep(seg)
    assert out.shape == rep.shape(tiny_store.segment_len) == (12, tiny_store.segment_len) and out.dtype == torch.float32
    shifted = rep(seg + 3.0)  # a constant offset (baseline) does not pass the high-pass
    assert torch.allclose(out, shifted, atol=1e-3)
    assert rep.represent(tiny_store.signals([0, 1])).shape == (2, 12, tiny_store.segment_len)


def test_example_encoder_gru(load_example):
    from ecg_bench.config import EncoderOptions, choice
    from ecg_bench.models.encoders import build_encoder
    from ecg_bench.models.encoders.base import encoder_spec

    load_example("encoder_gru")
    opts = choice(EncoderOptions, "gru", dim=16, num_tokens=3, hidden=8)
    enc = build_encoder(opts, encoder_spec(opts, in_leads=12, seq_len=500, fs=250.0))
    x = torch.randn(2, 12, 500, requires_grad=True)
    y = enc(x)
    assert y.shape == (2, 3, 16) == (2, enc.num_tokens, enc.out_dim)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert choice(EncoderOptions, "gru", dim=0).problems() == ["dim must be >= 1, got 0"]


def test_example_projector_norm_linear(load_example):
    from ecg_bench.config import ProjectorOptions, choice
    from ecg_bench.models.projection import build_projector

    load_example("projector_norm_linear")
    proj = build_projector(choice(ProjectorOptions, "norm_linear"), 16, 32)
    assert proj(torch.randn(2, 3, 16)).shape == (2, 3, 32)


def test_example_elm_scaled_llava(load_example, tiny_store, tiny_items):
    from ecg_bench.config import ELMOptions, EncoderOptions, ModelConfig, choice
    from ecg_bench.data.dataset import ConversationDataset
    from ecg_bench.models.elm import build_elm
    from ecg_bench.representations.signal import SignalRepresentation

    load_example("elm_scaled_llava")
    torch.manual_seed(0)
    cfg = ModelConfig(llm="tiny", elm=choice(ELMOptions, "scaled_llava", init_scale=0.5),
                      encoder=choice(EncoderOptions, "conv1d", dim=32, num_tokens=2))  # fmt: skip
    elm, proc = build_elm(cfg, seq_len=tiny_store.segment_len, fs=tiny_store.fs)
    assert elm.family == "scaled_llava" and elm.projector.scale.item() == 0.5
    ds = ConversationDataset(tiny_items[:2], tiny_store, SignalRepresentation())
    batch = proc.collate([proc.train_example(ds[i]["messages"], ds[i]["ecg"]) for i in range(2)])
    loss, n = elm(batch.input_ids, batch.attention_mask, batch.labels, batch.ecg)
    assert n > 0 and torch.isfinite(loss)
    loss.backward()
    assert elm.projector.scale.grad is not None and elm.projector.scale.grad != 0
    assert "projector" in elm.trainable_modules()


def test_example_condition_clipped(load_example, tiny_store):
    from ecg_bench.config import ConditionOptions, choice
    from ecg_bench.evaluation.conditions import build_condition

    load_example("condition_clipped")
    cond = build_condition(choice(ConditionOptions, "clipped", mv=0.2))
    assert cond.name == "clipped"
    x = tiny_store.signals([0, 1])
    out = cond.signals(0, lambda i: x)
    assert out.shape == x.shape and np.abs(out).max() <= 0.2 < np.abs(x).max()
    with pytest.raises(Exception, match="mv must be > 0"):
        build_condition(choice(ConditionOptions, "clipped", mv=0))


def test_example_metric_first_word(load_example):
    from ecg_bench.config import MetricOptions, choice
    from ecg_bench.evaluation.metrics import AnswerSample, score_samples

    load_example("metric_first_word")
    samples = [AnswerSample("Yes, it is.", "yes"), AnswerSample("no", "yes"), AnswerSample("", "")]
    scores = score_samples(["first_word"], samples)
    assert scores["first_word"]["first_word"].tolist() == [1.0, 0.0, 0.0]
    exact = score_samples(["first_word"], samples[:1], {"first_word": choice(MetricOptions, "first_word", lower=False)})
    assert exact["first_word"]["first_word"].tolist() == [0.0]


def test_example_pretrainer_lead_pca(load_example, tiny_store, tmp_path):
    from safetensors.torch import load_file

    from ecg_bench import cli

    load_example("pretrainer_lead_pca")
    out = tmp_path / "pca" / "lead_pca.safetensors"
    rc = cli.main(["pretrain", "lead_pca", "--store", str(tiny_store.path), "--out", str(out), "--components", "4"])
    assert rc == 0
    w = load_file(str(out))
    assert w["components"].shape == (4, 50) and w["mean"].shape == (50,)
    assert torch.allclose(w["components"] @ w["components"].T, torch.eye(4), atol=1e-4)  # orthonormal rows
    assert cli.main(["pretrain", "lead_pca", "--store", str(tiny_store.path)]) == 2  # --out is required

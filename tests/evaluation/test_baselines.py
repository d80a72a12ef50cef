"""Baselines: the majority answer (computed in every evaluation), the text-only model (train.ecg none) and the
zero-shot ELM (train.max_steps 0)."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch

from ecg_bench.config import ELMOptions, EncoderOptions, EvalConfig, MetricOptions, ModelConfig, RunConfig, choice
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.evaluation.baselines import ANY_TYPE, majority_answers, majority_baseline
from ecg_bench.models.elm import build_elm
from ecg_bench.representations.signal import SignalRepresentation
from ecg_bench.training.trainer import Trainer


def _item(i, patient, turns, topic="rate"):
    messages, meta_turns = [], []
    for qtype, answer in turns:
        messages += [{"role": "user", "content": f"<ecg>\nq{i}?"}, {"role": "assistant", "content": answer}]
        meta_turns.append({"question_type": qtype, "topic": topic})
    return {"id": f"x-{i}", "segment_ids": [0], "messages": messages, "patient_id": patient, "source": "t",
            "meta": {"turns": meta_turns}}  # fmt: skip


def test_majority_answer_per_question_type():
    train = [_item(0, "a", [("verify", "Yes"), ("choose", "regular")]), _item(1, "b", [("verify", "no")]),
             _item(2, "c", [("verify", "yes ")]), _item(3, "d", [("choose", "irregular")]),
             _item(4, "e", [("query", "60")])]  # fmt: skip
    got = majority_answers(train)
    # verify: yes x2 (two spellings; the first in A-Z order of equally used spellings) beats no; choose: a tie -> A-Z
    assert got == {"choose": "irregular", "query": "60", "verify": "Yes", ANY_TYPE: "Yes"}
    test = [
        _item(5, "p", [("verify", "yes"), ("choose", "regular")]),
        _item(6, "q", [("verify", "no")]),
        _item(7, "r", [("compare", "yes")]),
    ]  # a type never seen in training gets the overall majority
    res = majority_baseline(train, test, EvalConfig(metrics=[choice(MetricOptions, "accuracy")], bootstrap_resamples=50))
    assert res["num_samples"] == 4 and res["clusters"] == 3
    assert res["metrics"]["acc_normalized"] == pytest.approx(2 / 4)  # verify yes (right), choose irregular (wrong),
    assert res["per_type"]["verify"]["metrics"]["acc_normalized"] == pytest.approx(0.5)  # verify no (wrong), compare yes
    assert res["per_type"]["compare"]["metrics"]["acc_normalized"] == 1.0
    assert res["answer_by_type"] == got and "ci95" in res


@pytest.fixture(scope="module")
def families(tiny_store, tmp_path_factory):
    import ecg_bench.models.elm.base as elm_base
    from ecg_bench.ecg_byte import train_tokenizer
    from ecg_bench.models.llm import load_llm

    tok = str(train_tokenizer(tiny_store, vocab_size=48, num_samples=0).save(tmp_path_factory.mktemp("tok") / "tok.json"))
    base = load_llm("tiny")
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(elm_base, "load_llm", lambda name: copy.deepcopy(base))
        for family in ("llava", "ecg_byte"):
            torch.manual_seed(0)
            elm = choice(ELMOptions, family, **({"tokenizer": tok, "min_ecg_tokens": 16} if family == "ecg_byte" else {}))
            cfg = ModelConfig(elm=elm, llm="tiny", encoder=choice(EncoderOptions, "conv1d", num_tokens=2, dim=32),
                              max_length=192)  # fmt: skip
            out[family] = (cfg, *build_elm(cfg, seq_len=500, fs=250.0))
    return out


@pytest.mark.parametrize("family", ["llava", "ecg_byte"])
def test_text_only_training_sees_no_ecg(family, families, tiny_store, tiny_items):
    """train.ecg none: each family's processor drops the markers, as the no_signal condition does; no ECG is read."""
    model_cfg, elm, processor = families[family]
    ds = ConversationDataset(list(tiny_items)[:8], tiny_store, SignalRepresentation())
    cfg = RunConfig(model=model_cfg)
    cfg.train.max_steps, cfg.train.batch_size, cfg.train.ecg = 1, 4, "none"
    tr = Trainer(elm, processor, ds, cfg, "unused")
    with_ecg = processor.train_collator(ds)(list(range(4)))
    batch = tr.collate(list(range(4)))
    assert batch.ecg is None and batch.input_ids.shape[1] < with_ecg.input_ids.shape[1]
    for k in range(4):
        ids = processor.formatter.encode(ds.items[k]["messages"], with_ecg=False).input_ids
        assert batch.input_ids[k, : len(ids)].tolist() == ids and int(batch.attention_mask[k].sum()) == len(ids)
    # the prompt the no_signal condition generates from is the training prompt's beginning
    turn = processor.generation_inputs(ds.items[0]["messages"], None)[0]
    assert batch.input_ids[0, : len(turn.prompt_ids)].tolist() == turn.prompt_ids
    if family == "llava":
        tr.accumulate(0)
        assert all(p.grad is None for p in elm.encoder.parameters())  # the ECG path is never used
        assert any(p.grad is not None for p in elm.llm.parameters() if p.requires_grad)
        tr.optimizer.zero_grad(set_to_none=True)


def test_train_ecg_is_checked():
    cfg = RunConfig()
    cfg.train.ecg = "zeros"
    assert "train.ecg must be one of real, none, got 'zeros'" in cfg.problems()
    cfg = RunConfig()
    cfg.train.max_steps = -1
    assert "train.max_steps must be >= 0 (0 = evaluate without training), got -1" in cfg.problems()


@pytest.mark.slow
def test_zero_shot_run_evaluates_without_training_and_reports_the_majority_baseline(tmp_path, capsys, monkeypatch):
    from ecg_bench import cli
    from ecg_bench.presets import tiny

    package_log = logging.getLogger("ecg_bench")
    monkeypatch.setattr(package_log, "handlers", list(package_log.handlers))
    cfg = tiny(str(tmp_path / "run"))
    cfg.save(tmp_path / "tiny.json")
    assert cli.main(["run", "--config", str(tmp_path / "tiny.json"), "--train.max_steps", "0",
                     "--eval.conditions", "real", "no_signal"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    run = tmp_path / "run"
    assert not (run / "checkpoints").exists() and not (run / "metrics.jsonl").exists()
    res = json.loads((run / "results.json").read_text())
    assert res["training"]["steps"] == 0 and res["training"]["zero_shot"] and "no_signal" in res["training"]["note"]
    assert set(res["conditions"]) == {"real", "no_signal"}
    maj = res["baselines"]["majority"]
    assert maj["num_samples"] == res["conditions"]["real"]["num_samples"] and set(maj["answer_by_type"]) >= {"verify", ANY_TYPE}
    assert "majority answer (n=" in printed

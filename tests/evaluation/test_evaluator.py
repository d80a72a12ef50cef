"""Evaluator: conditions, turn-by-turn scoring with gold history, empty answers counted as wrong."""

from __future__ import annotations

import pytest
import torch
from elm_fixtures import make_tiny_elm

from ecg_bench.config import EvalConfig
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.errors import UnknownNameError
from ecg_bench.evaluation import evaluator
from ecg_bench.evaluation.evaluator import build_samples, evaluate
from ecg_bench.representations.signal import SignalRepresentation
from config_helpers import eval_config


@pytest.fixture(scope="module")
def tiny(tiny_store, tiny_items):
    elm, proc = make_tiny_elm()
    multi = [it for it in tiny_items if sum(m["role"] == "assistant" for m in it["messages"]) == 2][:2]
    single = [it for it in tiny_items if it not in multi][:3]
    assert len(multi) == 2
    return elm, proc, ConversationDataset(multi + single, tiny_store, SignalRepresentation())


def test_every_assistant_turn_is_a_sample_with_gold_history(tiny):
    _, proc, ds = tiny
    samples = build_samples(ds, proc, "real")
    assert len(samples) == 2 * 2 + 3
    second = [s for s in samples if s.turn_index == 1]
    assert len(second) == 2
    for s in second:
        item = next(it for it in ds.items if it["id"] == s.item_id)
        first_answer = [m["content"] for m in item["messages"] if m["role"] == "assistant"][0]
        prompt = proc.tokenizer.decode(s.prompt_ids)
        assert first_answer in prompt  # the gold answer, not the model's
        assert s.reference == [m["content"] for m in item["messages"] if m["role"] == "assistant"][1]
        assert s.ecg is not None  # the ECG of the first turn is still in the prompt


def test_conditions_change_only_the_signal(tiny):
    _, proc, ds = tiny
    real, zeros, none = (build_samples(ds, proc, c) for c in ("real", "zeros", "no_signal"))
    ph = proc.formatter.ecg_token_id
    for r, z, n in zip(real, zeros, none):
        assert r.prompt_ids == z.prompt_ids and r.reference == z.reference == n.reference
        assert torch.count_nonzero(z.ecg) == 0 and torch.count_nonzero(r.ecg) > 0
        assert n.ecg is None and ph not in n.prompt_ids and ph in r.prompt_ids
    with pytest.raises(UnknownNameError, match="no_signal, noise, real, shuffled, zeros"):
        build_samples(ds, proc, "shuffle")


def test_empty_generations_are_wrong_not_dropped(tiny, monkeypatch):
    elm, proc, ds = tiny
    n = len(build_samples(ds, proc, "real"))

    def fake_generate(elm, proc, samples, cfg, device):  # half the answers right, the rest empty
        return [s.reference if i % 2 == 0 else "" for i, s in enumerate(samples)]

    monkeypatch.setattr(evaluator, "generate", fake_generate)
    res = evaluate(elm, proc, ds, eval_config(conditions=["real"]), torch.device("cpu"))
    r = res["conditions"]["real"]
    assert r["num_samples"] == n and r["num_empty"] == n // 2
    assert r["metrics"]["acc_exact"] == pytest.approx(((n + 1) // 2) / n)
    assert len(res["samples"]) == n


def test_real_generation_writes_per_sample_outputs(tiny):
    elm, proc, ds = tiny
    cfg = eval_config(conditions=["real", "no_signal"], max_new_tokens=3, batch_size=4)
    res = evaluate(elm, proc, ds, cfg, torch.device("cpu"))
    assert set(res["conditions"]) == {"real", "no_signal"}
    for cond in res["conditions"].values():
        assert {"acc_exact", "acc_normalized", "bleu", "rouge1", "rougeL"} <= set(cond["metrics"])
        lo, hi = cond["acc_normalized_ci95"]
        assert 0 <= lo <= cond["metrics"]["acc_normalized"] <= hi <= 1
    s = res["samples"][0]
    assert {"condition", "id", "turn", "question", "reference", "prediction", "acc_exact"} <= set(s)
    assert len(res["samples"]) == 2 * len(build_samples(ds, proc, "real"))


def test_long_questions_are_cut_to_max_length_and_counted(tiny_store, tiny_items, monkeypatch):
    """A 36k-character question took 10.4 GB and 144 s: prompts now follow max_length, and cuts are counted."""
    max_length, new_tokens = 64, 8
    elm, proc = make_tiny_elm(max_length=max_length)
    single = next(it for it in tiny_items if sum(m["role"] == "assistant" for m in it["messages"]) == 1)
    multi = next(it for it in tiny_items if sum(m["role"] == "assistant" for m in it["messages"]) == 2)
    long_q = "<ecg>\n" + "Please consider every wave of this tracing carefully. " * 700 + "WHICH RHYTHM IS IT?"
    assert len(long_q) > 36_000
    long = {**single, "id": "long", "messages": [{"role": "user", "content": long_q}, single["messages"][1]]}
    ds = ConversationDataset([long, multi], tiny_store, SignalRepresentation())
    samples = build_samples(ds, proc, "real", max_new_tokens=new_tokens)
    budget = max_length - new_tokens
    assert all(len(s.prompt_ids) <= budget for s in samples)
    cut = next(s for s in samples if s.item_id == "long")
    assert (
        cut.truncated and cut.prompt_ids.count(proc.formatter.ecg_token_id) == proc.formatter.num_ecg_tokens
    )  # the ECG block is kept
    assert proc.tokenizer.decode(cut.prompt_ids).count("WHICH RHYTHM IS IT?") == 1  # cut from the left: the end stays
    # a second turn that does not fit loses its history first (as in training), its question stays whole
    second = proc.formatter.eval_turns(multi["messages"], room=20)[1]
    text = proc.tokenizer.decode(second.prompt_ids)
    assert second.truncated and len(second.prompt_ids) <= max_length - 20
    assert multi["messages"][1]["content"] not in text and multi["messages"][2]["content"].replace("<ecg>", "") in text

    lengths = []
    generate = type(elm).generate

    def spy(self, input_ids, *args, **kwargs):
        lengths.append(input_ids.shape[1])
        return generate(self, input_ids, *args, **kwargs)

    monkeypatch.setattr(type(elm), "generate", spy)
    cfg = eval_config(conditions=["real", "no_signal"], max_new_tokens=new_tokens, batch_size=4)
    res = evaluate(elm, proc, ds, cfg, torch.device("cpu"))
    assert lengths and max(lengths) <= budget
    for name, cond in res["conditions"].items():
        assert cond["truncated_prompts"] == sum(s.truncated for s in build_samples(ds, proc, name, new_tokens)) >= 1
    assert [s["truncated"] for s in res["samples"] if s["id"] == "long"] == [True, True]


def test_results_carry_patient_clustered_cis_and_per_type_scores(tiny, monkeypatch):
    """Every metric gets a CI; per question type and topic the hand count of the per-sample rows."""
    elm, fmt, ds = tiny

    def fake_generate(elm, fmt, samples, cfg, device):  # right on even samples, a wrong word on odd ones
        return [s.reference if i % 2 == 0 else "wrong" for i, s in enumerate(samples)]

    monkeypatch.setattr(evaluator, "generate", fake_generate)
    cfg = eval_config(conditions=["real", "no_signal"], metrics=["accuracy", "bleu", "rouge"], bootstrap_resamples=200)
    res = evaluate(elm, fmt, ds, cfg, torch.device("cpu"))
    items = {it["id"]: it for it in ds.items}
    for name, cond in res["conditions"].items():
        rows = [s for s in res["samples"] if s["condition"] == name]
        assert set(cond["ci95"]) == set(cond["metrics"]) == {"acc_exact", "acc_normalized", "bleu", "rouge1", "rouge2", "rougeL"}
        assert cond["acc_normalized_ci95"] == cond["ci95"]["acc_normalized"]
        assert cond["clusters"] == len({it["patient_id"] for it in ds.items}) < cond["num_samples"] == len(rows)
        for row in rows:  # the second turn of a two-turn item has its own type (meta.turns)
            turn = items[row["id"]]["meta"]["turns"][row["turn"]]
            assert (row["question_type"], row["topic"]) == (turn["question_type"], turn["topic"])
            assert row["patient_id"] == items[row["id"]]["patient_id"]
        for group_key, field in (("per_type", "question_type"), ("per_topic", "topic")):
            groups = cond[group_key]
            assert set(groups) == {r[field] for r in rows}
            for label, block in groups.items():
                mine = [r for r in rows if r[field] == label]
                assert block["num_samples"] == len(mine)
                assert block["clusters"] == len({r["patient_id"] for r in mine})
                assert block["metrics"]["acc_exact"] == pytest.approx(sum(r["acc_exact"] for r in mine) / len(mine))
                assert set(block["ci95"]) == set(block["metrics"])
                for key, (lo, hi) in block["ci95"].items():
                    assert lo - 1e-9 <= block["metrics"][key] <= hi + 1e-9
    assert res["conditions"]["real"]["metrics"]["acc_exact"] == pytest.approx(
        sum(1 for i in range(len(rows)) if i % 2 == 0) / len(rows)
    )
    again = evaluate(elm, fmt, ds, cfg, torch.device("cpu"))
    assert again["conditions"]["real"]["ci95"] == res["conditions"]["real"]["ci95"]  # seeded

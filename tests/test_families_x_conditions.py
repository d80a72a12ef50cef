"""Must hold: every ELM family x every evaluation condition runs through one training step and evaluation,
through the same trainer and evaluator code (which never ask which family a model is); every family saved as a
checkpoint answers through `ecg-bench chat`."""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ecg_bench.config import (ConditionOptions, ELMOptions, EncoderOptions, EvalConfig, MetricOptions, ModelConfig,
                               RepresentationOptions, RunConfig, choice)  # fmt: skip
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.evaluation.conditions import CONDITIONS
from ecg_bench.evaluation.evaluator import build_samples, evaluate
from ecg_bench.models.elm import ELMS, build_elm
from ecg_bench.representations.signal import SignalRepresentation
from ecg_bench.training.trainer import Trainer

FAMILIES = ELMS.names()
"""Every registered family, plug-ins included."""
SRC = Path(__file__).resolve().parents[1] / "src" / "ecg_bench"


def family_options(family: str, tok_file: str) -> dict:
    """Options a family needs beyond its defaults to build on the tiny LLM (the token family: a tokenizer)."""
    return {"tokenizer": tok_file, "min_ecg_tokens": 16} if "tokenizer" in {f.name for f in dataclasses.fields(ELMS.options(family))} else {}


@pytest.fixture(scope="module")
def tok_file(tiny_store, tmp_path_factory):
    from ecg_bench.ecg_byte import train_tokenizer

    return str(train_tokenizer(tiny_store, vocab_size=48, num_samples=0).save(tmp_path_factory.mktemp("tok") / "tok.json"))


@pytest.fixture(scope="module")
def built(tok_file):
    """One tiny ELM per family (the tiny LLM's tokenizer parsed once, each build gets a copy)."""
    import ecg_bench.models.elm.base as elm_base
    from ecg_bench.models.llm import load_llm

    base = load_llm("tiny")
    cache = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(elm_base, "load_llm", lambda name: copy.deepcopy(base))
        for family in FAMILIES:
            torch.manual_seed(0)
            cfg = ModelConfig(elm=choice(ELMOptions, family, **family_options(family, tok_file)), llm="tiny", max_length=192,
                              encoder=choice(EncoderOptions, "conv1d", num_tokens=2, dim=32))  # fmt: skip
            cache[family] = (cfg, *build_elm(cfg, seq_len=500, fs=250.0))
    return cache


@pytest.mark.parametrize("condition", sorted(CONDITIONS.names()))
@pytest.mark.parametrize("family", FAMILIES)
def test_family_trains_one_step_and_evaluates_under_condition(family, condition, built, tiny_store, tiny_items, tmp_path):
    model_cfg, elm, processor = built[family]
    _train_step_and_evaluate(model_cfg, elm, processor, SignalRepresentation(), condition, tiny_store, tiny_items, tmp_path)


# representation x encoder pairs beyond the signal (llava: the family that takes any encoder)
PAIRS = [("image", "clip"), ("stacked", "vit"), ("image", "random"), ("stacked", "random"), ("signal", "random")]


@pytest.fixture(scope="module")
def built_pairs(tmp_path_factory):
    """llava ELMs for each PAIRS entry: tiny CLIP / ViT saved to a folder (no download), the random encoder."""
    import ecg_bench.models.elm.base as elm_base
    from elm_fixtures import save_tiny_vision_model

    from ecg_bench.models.llm import load_llm
    from ecg_bench.representations.image import ImageOptions, ImageRepresentation
    from ecg_bench.representations.stacked import StackedRepresentation

    base = load_llm("tiny")
    root = tmp_path_factory.mktemp("vision")
    reps = {"image": ImageRepresentation(ImageOptions(width=64, height=64), fs=250.0), "stacked": StackedRepresentation(),
            "signal": SignalRepresentation()}  # fmt: skip
    cache = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(elm_base, "load_llm", lambda name: copy.deepcopy(base))
        for rep_name, encoder in PAIRS:
            torch.manual_seed(0)
            rep = reps[rep_name]
            out = rep.output(500)
            enc = (choice(EncoderOptions, "random", width=16, depth=2, dim=32, num_tokens=2) if encoder == "random"
                   else choice(EncoderOptions, encoder, model=str(save_tiny_vision_model(encoder, root / encoder)), num_tokens=2))  # fmt: skip
            cfg = ModelConfig(elm=choice(ELMOptions, "llava"), llm="tiny", encoder=enc, max_length=192,
                              representation=choice(RepresentationOptions, rep_name))  # fmt: skip
            elm, processor = build_elm(cfg, seq_len=500, fs=250.0, kind=out.kind, shape=out.shape)
            cache[(rep_name, encoder)] = (cfg, elm, processor, rep)
    return cache


@pytest.mark.parametrize("condition", sorted(CONDITIONS.names()))
@pytest.mark.parametrize("pair", PAIRS, ids=lambda p: "+".join(p))
def test_representation_and_encoder_train_one_step_and_evaluate_under_condition(pair, condition, built_pairs, tiny_store,
                                                                                tiny_items, tmp_path):  # fmt: skip
    """Must hold 1: image + tiny CLIP, stacked + tiny ViT and the random encoder go through the same trainer and
    evaluator as the signal; the condition acts on the signal, the representation makes the picture."""
    model_cfg, elm, processor, rep = built_pairs[pair]
    _train_step_and_evaluate(model_cfg, elm, processor, rep, condition, tiny_store, tiny_items, tmp_path)
    if condition == "zeros" and pair[0] == "image":  # the blank printout reaches the encoder: grid, labels, flat traces
        this = build_samples(ConversationDataset(tiny_items[8:10], tiny_store, rep), processor, "zeros", 2)
        blank = torch.from_numpy(np.asarray(rep.draw(np.zeros((12, 500), np.float32))).transpose(2, 0, 1).astype(np.float32))
        assert all(torch.equal(e, blank) for s in this for e in s.ecg)


def _train_step_and_evaluate(model_cfg, elm, processor, rep, condition, tiny_store, tiny_items, tmp_path):
    cfg = RunConfig(model=model_cfg)
    cfg.train.max_steps, cfg.train.batch_size = 1, 4
    options = {"leads": {"leads": ["precordial"]}, "noise": {"snr_db": 0.0}}.get(condition, {})
    cfg.eval = EvalConfig(conditions=[choice(ConditionOptions, condition, **options)], max_new_tokens=2, batch_size=4,
                          metrics=[choice(MetricOptions, "accuracy")])  # fmt: skip
    train = ConversationDataset(tiny_items[:8], tiny_store, rep)
    loss = Trainer(elm, processor, train, cfg, tmp_path).train_step(0)
    assert math.isfinite(loss) and loss > 0

    test = ConversationDataset(tiny_items[8:12], tiny_store, rep)
    res = evaluate(elm, processor, test, cfg.eval, torch.device("cpu"))
    got = res["conditions"][condition]
    assert got["num_samples"] == len(res["samples"]) >= len(test) and "acc_normalized_ci95" in got
    assert {s["condition"] for s in res["samples"]} == {condition}

    # the condition reaches the model input: anything but `real` differs from `real` in the ids or the ECG tensor
    real = build_samples(test, processor, "real", 2)
    this = build_samples(test, processor, cfg.eval.conditions[0], 2)
    assert [s.reference for s in real] == [s.reference for s in this]
    same = [r.prompt_ids == t.prompt_ids and _same(r.ecg, t.ecg) for r, t in zip(real, this)]
    assert all(same) if condition == "real" else not any(same)
    if condition == "no_signal":
        assert all(s.ecg is None for s in this) and all(len(t.prompt_ids) < len(r.prompt_ids) for r, t in zip(real, this))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_saved_as_a_checkpoint_answers_through_chat(family, built, shared_data, tmp_path, capsys):
    """Must hold 2: each family, saved as a checkpoint, answers about a real PTB-XL record through `ecg-bench chat`
    (a fresh process' load path: from_pretrained from the folder alone) exactly as the model in memory does."""
    from ecg_bench import cli
    from ecg_bench.data.contract import PreprocessingContract
    from ecg_bench.inference import ECGLanguageModel
    from ecg_bench.training.checkpoint import save_checkpoint

    model_cfg, elm, processor = built[family]
    cfg = RunConfig(model=model_cfg)
    cfg.eval.max_new_tokens = 6
    ecg, question = shared_data / "ptbxl/records500/06000/06000_hr", "Is the rhythm regular?"
    trained = {n: p.detach().clone() for n, p in elm.named_parameters() if p.requires_grad}
    gen = torch.Generator().manual_seed(1)
    try:
        with torch.no_grad():  # weights far from the random LLM's: answers that a wrongly loaded checkpoint would change
            for n, p in elm.named_parameters():
                if n in trained:
                    p.add_(torch.randn(p.shape, generator=gen) * 0.5)
        ck = save_checkpoint(tmp_path / "ck", elm, cfg)
        in_memory = ECGLanguageModel(elm.eval(), processor, cfg, PreprocessingContract.from_run_config(cfg),
                                     SignalRepresentation(), ck)  # fmt: skip
        expected = in_memory.ask(ecg, question)
        assert cli.main(["chat", "--checkpoint", str(ck), "--ecg", str(ecg), "--question", question]) == 0
        assert capsys.readouterr().out == expected + "\n" and expected.strip()
    finally:
        with torch.no_grad():
            for n, p in elm.named_parameters():
                if n in trained:
                    p.copy_(trained[n])


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b))


def test_no_module_outside_the_elm_package_branches_on_the_family():
    """Must hold 1: no ``reads_ecg``, no isinstance on ELM classes, no import of a family module outside models/elm/."""
    elm_pkg = SRC / "models" / "elm"
    classes = r"(ELM|EncoderELM|TokenELM|TokenProcessor|PlaceholderProcessor|TokenChatFormatter)"
    bad = []
    for f in SRC.rglob("*.py"):
        if elm_pkg in f.parents:
            continue
        text = f.read_text()
        rel = f.relative_to(SRC)
        if "reads_ecg" in text:
            bad.append(f"{rel}: reads_ecg")
        if re.search(rf"isinstance\([^)]*\b{classes}\b", text) or re.search(rf"type\([^)]*\)\s+(is|==)\s+{classes}\b", text):
            bad.append(f"{rel}: isinstance on an ELM class")
        if re.search(r"ecg_bench\.models\.elm\.(token_elm|encoder_elm)|\b(EncoderELM|TokenELM|TokenProcessor)\b", text):
            bad.append(f"{rel}: names a family's module or class")
    assert not bad, bad


def test_the_elm_package_has_no_import_cycles():
    """processors <- base <- encoder_elm, token_elm <- __init__: every import inside models/elm/ runs one way."""
    import ast

    pkg = SRC / "models" / "elm"
    graph = {}
    for f in pkg.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ecg_bench.models.elm"):
                sub = node.module.removeprefix("ecg_bench.models.elm").lstrip(".")
                deps |= {sub} if sub else {a.name for a in node.names}
        graph[f.stem] = deps & {g.stem for g in pkg.glob("*.py")}
    order, seen = [], set()

    def visit(mod, stack):
        assert mod not in stack, f"import cycle: {' -> '.join([*stack, mod])}"
        if mod not in seen:
            for dep in sorted(graph[mod]):
                visit(dep, [*stack, mod])
            seen.add(mod)
            order.append(mod)

    for mod in sorted(graph):
        visit(mod, [])
    assert graph["processors"] == set() and order.index("base") < order.index("token_elm")

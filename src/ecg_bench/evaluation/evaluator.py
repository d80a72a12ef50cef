"""Batched generation and scoring, under the signal conditions that tell whether the model uses the ECG.

Conditions (``EvalConfig.conditions``, the ``CONDITIONS`` registry in ``conditions.py``): ``real``, ``zeros``,
``no_signal``, ``noise``, ``shuffled``, ``leads``. A condition gives the signal the model sees for each item
(or none); the dataset's representation makes it model input and the ELM's processor writes it into the
prompts, so this module never asks which ELM family it evaluates.

A multi-turn conversation is scored turn by turn, each prompt holding the GOLD earlier answers.
An empty generation is scored as wrong, never dropped.

Prompts are cut to ``model.max_length`` minus the generation room (``eval.max_new_tokens``) by the
training rule (``ChatFormatter``: oldest history first, the token ELM's ECG blocks before that, the
question from its left last); each condition's ``truncated_prompts`` in results.json counts the cut ones.

With several processes (torchrun; ``torch.distributed`` initialised) generation is sharded: the batches are
made exactly as in one process (prompts sorted by length, ``eval.batch_size`` at a time) and rank r generates
batches r, r + N, ...; the answers are gathered back in order, so every rank scores the same answers and
results.json is the same as one process's (rank 0 writes it).

Scoring (``score_condition``): every answer becomes an ``AnswerSample`` carrying its item (question,
question type, topic, patient, meta); ``statistics.summarize_condition`` gives each metric's value
and 95 % CI resampled by patient (``eval.bootstrap_resamples``), overall and per question type /
topic. A condition in results.json::

    {"metrics": {key: value}, "ci95": {key: [low, high]}, "acc_normalized_ci95": [low, high],
     "num_samples", "clusters" (patients), "num_empty", "truncated_prompts", "seconds",
     "per_type": {type: {"num_samples", "clusters", "metrics", "ci95"}}, "per_topic": {...}}

results.json ``samples`` holds one row per condition and answer: condition, id, turn, question, reference,
prediction, truncated, patient_id, question_type, topic, segment_ids (the store segments the item shows)
and the per-sample score of every per-sample metric key; ``ecg-bench report`` pairs rows across runs and
conditions by (id, turn) and resamples them by patient.

``acc_normalized_ci95`` (kept from before, when accuracy is measured) equals ``ci95["acc_normalized"]``;
``per_type`` / ``per_topic`` appear when the items carry a type / topic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ecg_bench.config import ConditionOptions, EvalConfig, condition_label
from ecg_bench.data.conversations import turn_labels
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.evaluation.conditions import CONDITIONS, Condition, build_condition
from ecg_bench.evaluation.metrics import AnswerSample, metric_options
from ecg_bench.evaluation.statistics import summarize_condition
from ecg_bench.logging_utils import get_logger, progress
from ecg_bench.models.elm import ELM, Processor

log = get_logger(__name__)

__all__ = ["CONDITIONS", "EvalSample", "build_samples", "evaluate", "generate"]


@dataclass
class EvalSample:
    """One assistant turn to generate: prompt ids, the ECGs it refers to, and the gold answer."""

    item_id: str
    turn_index: int
    prompt_ids: list[int]
    ecg: torch.Tensor | None
    reference: str
    question: str
    truncated: bool = False
    """Whether the prompt was cut to fit ``model.max_length`` (see the module doc)."""


def build_samples(
    dataset: ConversationDataset,
    processor: Processor,
    condition: str | ConditionOptions | Condition,
    max_new_tokens: int = 0,
) -> list[EvalSample]:
    """Every assistant turn of every conversation, with the model input of ``condition`` (a name with default
    options, an item of ``eval.conditions``, or a built Condition); prompts leave room for ``max_new_tokens``
    generated tokens within ``max_length`` (see ``ChatFormatter.prompt_budget``)."""
    cond = condition if isinstance(condition, Condition) else build_condition(condition)
    cond.prepare(dataset.items)
    samples = []
    for i, item in enumerate(dataset.items):
        signals = cond.signals(i, dataset.signals)  # no_signal: None, the store is never read
        ecg = None if signals is None else dataset.represent(signals)
        users = [m["content"] for m in item["messages"] if m["role"] == "user"]
        for turn in processor.generation_inputs(item["messages"], ecg, room=max_new_tokens):
            question = users[turn.turn_index] if turn.turn_index < len(users) else ""
            samples.append(
                EvalSample(item["id"], turn.turn_index, turn.prompt_ids, turn.ecg, turn.reference, question, turn.truncated)
            )
    return samples


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@torch.no_grad()
def generate(elm: ELM, processor: Processor, samples: list[EvalSample], cfg: EvalConfig, device: torch.device) -> list[str]:
    """Greedy answers for ``samples`` in batches of similar prompt length (left padded); sharded by batch across
    the ranks of a process group and gathered in order (see the module doc)."""
    elm.eval()
    rank, world = _rank_world()
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].prompt_ids))
    starts = list(range(0, len(order), cfg.batch_size))[rank::world]  # the same batches as one process, dealt out
    mine: dict[int, str] = {}
    for start in progress(starts, desc="generate", leave=False, disable=rank != 0):
        idx = order[start : start + cfg.batch_size]
        batch = processor.collate_generation([samples[i] for i in idx]).to(device)
        new = elm.generate(
            batch.input_ids, batch.attention_mask, batch.ecg,
            max_new_tokens=cfg.max_new_tokens, stop_token_ids=processor.stop_token_ids, pad_token_id=processor.pad_token_id,
        )  # fmt: skip
        for i, ids in zip(idx, new):
            mine[i] = processor.decode(ids)
    if world > 1:
        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, mine)
        mine = {i: text for part in parts for i, text in part.items()}
    return [mine[i] for i in range(len(samples))]


def evaluate(
    elm: ELM, processor: Processor, dataset: ConversationDataset, cfg: EvalConfig, device: torch.device
) -> dict[str, Any]:
    """Generate and score every condition in ``cfg.conditions``; returns metrics and per-sample outputs (keyed by
    the condition's name, or ``name(option=value)`` when a condition appears more than once)."""
    results: dict[str, Any] = {"conditions": {}, "samples": []}
    segments = {it["id"]: [int(i) for i in it.get("segment_ids", [])] for it in dataset.items}
    for opts in cfg.conditions:
        condition = condition_label(opts, cfg.conditions)
        t0 = time.time()
        samples = build_samples(dataset, processor, opts, cfg.max_new_tokens)
        truncated = sum(s.truncated for s in samples)
        if truncated:
            log.warning(
                "%s: %d of %d prompts cut to max_length=%d minus %d generation tokens (counted as truncated_prompts)",
                condition, truncated, len(samples), processor.max_length, cfg.max_new_tokens,
            )  # fmt: skip
        preds = generate(elm, processor, samples, cfg, device)
        answers = answer_samples(dataset.items, samples, preds)
        summary, rows = score_condition(answers, cfg)
        summary.update(num_empty=sum(not p for p in preds), truncated_prompts=truncated, seconds=round(time.time() - t0, 2))
        results["conditions"][condition] = _ordered(summary)
        ci = summary["ci95"]
        shown = ", ".join(f"{k}={v:.3f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]" for k, v in summary["metrics"].items())
        log.info("%s (%d patients): %s", condition, summary["clusters"], shown)
        for s, a, row in zip(samples, answers, rows):
            results["samples"].append(
                {"condition": condition, "id": s.item_id, "turn": s.turn_index, "question": s.question,
                 "reference": s.reference, "prediction": a.prediction, "truncated": s.truncated,
                 "patient_id": a.patient_id, "question_type": a.question_type, "topic": a.topic,
                 "segment_ids": segments[s.item_id], **row}
            )  # fmt: skip
    return results


def answer_samples(items: list[dict[str, Any]], samples: list[EvalSample], preds: list[str]) -> list[AnswerSample]:
    """Each generated answer with its item: question, the turn's question type and topic, patient, meta."""
    by_id = {it["id"]: it for it in items}
    out = []
    for s, pred in zip(samples, preds, strict=True):
        item = by_id[s.item_id]
        labels = turn_labels(item, s.turn_index)
        out.append(AnswerSample(
            prediction=pred, reference=s.reference, question=s.question, question_type=labels["question_type"],
            topic=labels["topic"], patient_id=item["patient_id"], item_id=s.item_id, turn=s.turn_index, meta=item["meta"],
        ))  # fmt: skip
    return out


def score_condition(answers: list[AnswerSample], cfg: EvalConfig) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """One condition's entry of results.json (see the module doc) and each answer's per-sample scores."""
    names = [m.type for m in cfg.metrics]
    summary = summarize_condition(answers, names, metric_options(names, cfg), n_resamples=cfg.bootstrap_resamples)
    rows = summary.pop("per_sample")
    if "acc_normalized" in summary["ci95"]:
        summary["acc_normalized_ci95"] = summary["ci95"]["acc_normalized"]
    return summary, rows


_KEY_ORDER = ("metrics", "ci95", "acc_normalized_ci95", "num_samples", "clusters", "num_empty", "truncated_prompts", "seconds")


def _ordered(summary: dict[str, Any]) -> dict[str, Any]:
    """results.json keys in reading order: headline numbers first, per-type / per-topic blocks last."""
    return {**{k: summary[k] for k in _KEY_ORDER if k in summary}, **{k: v for k, v in summary.items() if k not in _KEY_ORDER}}

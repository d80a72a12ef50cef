"""Batched generation and scoring, under the signal conditions that tell whether the model uses the ECG.

Conditions (``EvalConfig.ablations``, the ``CONDITIONS`` registry in ``conditions.py``): ``real``, ``zeros``,
``no_signal``, ``noise``, ``shuffled``, ``leads``. A condition gives the signal the model sees for each item
(or none); the dataset's representation makes it model input and the ELM's processor writes it into the
prompts, so this module never asks which ELM family it evaluates.

A multi-turn conversation is scored turn by turn, each prompt holding the GOLD earlier answers.
An empty generation is scored as wrong, never dropped.

Prompts are cut to ``model.max_length`` minus the generation room (``eval.max_new_tokens``) by the
training rule (``ChatFormatter``: oldest history first, the token ELM's ECG blocks before that, the
question from its left last); each condition's ``truncated_prompts`` in results.json counts the cut ones.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from ecg_bench.config import EvalConfig
from ecg_bench.data.dataset import ConversationDataset
from ecg_bench.evaluation.conditions import CONDITIONS, Condition, build_condition
from ecg_bench.evaluation.metrics import compute_metrics, per_sample_scores
from ecg_bench.evaluation.statistics import bootstrap_ci
from ecg_bench.logging_utils import get_logger
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
    condition: str | Condition,
    max_new_tokens: int = 0,
    eval_cfg: EvalConfig | None = None,
) -> list[EvalSample]:
    """Every assistant turn of every conversation, with the model input of ``condition`` (a name, its options
    read from ``eval_cfg``, or a built Condition); prompts leave room for ``max_new_tokens`` generated tokens
    within ``max_length`` (see ``ChatFormatter.prompt_budget``)."""
    cond = build_condition(condition, eval_cfg) if isinstance(condition, str) else condition
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


@torch.no_grad()
def generate(elm: ELM, processor: Processor, samples: list[EvalSample], cfg: EvalConfig, device: torch.device) -> list[str]:
    """Greedy answers for ``samples`` in batches of similar prompt length (left padded)."""
    elm.eval()
    order = sorted(range(len(samples)), key=lambda i: len(samples[i].prompt_ids))
    out: list[str] = [""] * len(samples)
    for start in tqdm(range(0, len(order), cfg.batch_size), desc="generate", leave=False):
        idx = order[start : start + cfg.batch_size]
        batch = processor.collate_generation([samples[i] for i in idx]).to(device)
        new = elm.generate(
            batch.input_ids, batch.attention_mask, batch.ecg,
            max_new_tokens=cfg.max_new_tokens, stop_token_ids=processor.stop_token_ids, pad_token_id=processor.pad_token_id,
        )  # fmt: skip
        for i, ids in zip(idx, new):
            out[i] = processor.decode(ids)
    return out


def evaluate(
    elm: ELM, processor: Processor, dataset: ConversationDataset, cfg: EvalConfig, device: torch.device
) -> dict[str, Any]:
    """Generate and score every condition in ``cfg.ablations``; returns metrics and per-sample outputs."""
    results: dict[str, Any] = {"conditions": {}, "samples": []}
    for condition in cfg.ablations:
        t0 = time.time()
        samples = build_samples(dataset, processor, condition, cfg.max_new_tokens, cfg)
        truncated = sum(s.truncated for s in samples)
        if truncated:
            log.warning(
                "%s: %d of %d prompts cut to max_length=%d minus %d generation tokens (counted as truncated_prompts)",
                condition, truncated, len(samples), processor.max_length, cfg.max_new_tokens,
            )  # fmt: skip
        preds = generate(elm, processor, samples, cfg, device)
        refs = [s.reference for s in samples]
        metrics = compute_metrics(cfg.metrics, preds, refs, cfg)
        scores = per_sample_scores(preds, refs)
        _, lo, hi = bootstrap_ci([s["acc_normalized"] for s in scores])
        results["conditions"][condition] = {
            "metrics": metrics,
            "acc_normalized_ci95": [lo, hi],
            "num_samples": len(samples),
            "num_empty": sum(not p for p in preds),
            "truncated_prompts": truncated,
            "seconds": round(time.time() - t0, 2),
        }
        log.info("%s: %s", condition, ", ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
        for s, p, sc in zip(samples, preds, scores):
            results["samples"].append(
                {"condition": condition, "id": s.item_id, "turn": s.turn_index, "question": s.question,
                 "reference": s.reference, "prediction": p, "truncated": s.truncated, **sc}
            )  # fmt: skip
    return results

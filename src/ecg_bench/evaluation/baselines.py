"""Baselines every results table shows next to the model, so that it says what the ECG adds.

- **majority** (computed here, in every evaluation): for each question type, the most frequent answer
  among the TRAINING conversations' assistant turns of that type (normalized as the accuracy metric
  compares answers: lower case, trimmed); a test turn of a type never seen in training gets the most
  frequent training answer overall. Ties go to the alphabetically first answer, so it is deterministic.
  Scored with the same metrics and patient-clustered CIs as a condition, under ``results.json``'s
  ``baselines.majority``, with the answer chosen per type (``answer_by_type``).
- **text only** (``train.ecg none``): the model trained without ECGs (the ECG markers dropped); evaluate
  it under ``no_signal``. The pipeline runs it; ``results.json`` records ``config.train.ecg``.
- **zero-shot** (``train.max_steps 0``): the ELM evaluated as built. What that means per family: the
  LLM is the base model (LoRA adapters start as the identity; ``mini`` / ``tiny`` are random, as they are
  trained from scratch), while the new parts are untrained: ``llava``'s encoder and projector and
  ``encoder_free``'s projector are random, so the ``real`` condition writes random embeddings at the
  ``<ecg>`` positions; ``ecg_byte``'s added ECG-token embeddings are untrained rows. So the fair zero-shot
  number of the base LLM is its ``no_signal`` condition (the question alone, no ECG marker).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ecg_bench.config import EvalConfig
from ecg_bench.data.conversations import turn_labels
from ecg_bench.evaluation.evaluator import score_condition
from ecg_bench.evaluation.metrics import AnswerSample
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

ANY_TYPE = "*"
"""Key of the overall most frequent training answer (used for question types unseen in training)."""
NO_TYPE = "(none)"
"""Key of turns without a question type."""


def assistant_turns(item: dict[str, Any]) -> list[tuple[int, str, str]]:
    """``(turn index, question, answer)`` of every assistant turn of a conversation."""
    out, question = [], ""
    for m in item["messages"]:
        if m["role"] == "user":
            question = m["content"]
        elif m["role"] == "assistant":
            out.append((len(out), question, m["content"]))
    return out


def _norm(text: str) -> str:
    return " ".join(str(text).lower().split())


def majority_answers(train_items: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Question type -> its most frequent training answer (and ``ANY_TYPE`` -> the overall one)."""
    by_type: dict[str, Counter] = {}
    overall: Counter = Counter()
    spellings: dict[str, Counter] = {}  # answers are counted normalized, given in their most used spelling
    for item in train_items:
        for turn, _, answer in assistant_turns(item):
            qtype = turn_labels(item, turn)["question_type"] or NO_TYPE
            key = _norm(answer)
            by_type.setdefault(qtype, Counter())[key] += 1
            overall[key] += 1
            spellings.setdefault(key, Counter())[answer.strip()] += 1
    pick = lambda c: min(c.items(), key=lambda kv: (-kv[1], kv[0]))[0]  # noqa: E731  # most frequent, then A-Z
    out = {t: pick(spellings[pick(c)]) for t, c in sorted(by_type.items())}
    if overall:
        out[ANY_TYPE] = pick(spellings[pick(overall)])
    return out


def majority_baseline(
    train_items: Sequence[dict[str, Any]], test_items: Sequence[dict[str, Any]], cfg: EvalConfig
) -> dict[str, Any]:
    """The majority-answer baseline scored on every assistant turn of ``test_items`` (see the module doc)."""
    answers = majority_answers(train_items)
    samples = []
    for item in test_items:
        for turn, question, reference in assistant_turns(item):
            labels = turn_labels(item, turn)
            guess = answers.get(labels["question_type"] or NO_TYPE, answers.get(ANY_TYPE, ""))
            samples.append(AnswerSample(
                prediction=guess, reference=reference, question=question, question_type=labels["question_type"],
                topic=labels["topic"], patient_id=item["patient_id"], item_id=item["id"], turn=turn, meta=item["meta"],
            ))  # fmt: skip
    if not samples:
        return {}
    summary, _ = score_condition(samples, cfg)
    summary["answer_by_type"] = answers
    summary["rule"] = "most frequent training answer per question type"
    shown = ", ".join(f"{k}={v:.3f}" for k, v in summary["metrics"].items())
    log.info("majority-answer baseline (%d answers): %s", len(samples), shown)
    return summary

"""Question-answer conversations generated from the synthetic source's ground truth.

Three question forms (``DataConfig.question_types``):

- ``verify``: yes/no ("Is there tachycardia?" -> "yes"). The attribute asked about is chosen so that
  every (attribute, answer) pair is used about equally often, so "yes" and "no" are each ~50 %
  overall and per question: a model cannot score by answering from the question alone.
- ``choose``: pick one of the options listed in the question, in a per-item shuffled order
  ("Is the heart rate fast, slow or normal?" -> "fast").
- ``query``: name a value ("What is the rhythm?" -> "atrial fibrillation"; "What is the heart rate
  in beats per minute, rounded to the nearest 10?" -> "110").

One item per segment with a random question form; ``multi_turn_fraction`` of the items ask a second
question on another topic (that user message has no ``<ecg>`` marker). Deterministic for a seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

from ecg_bench.config import DataConfig, MappedOptions
from ecg_bench.data.conversations import ECG_MARKER, validate_item
from ecg_bench.data.mapped.base import MAPPED, mapped_options
from ecg_bench.data.store import SegmentStore
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

NAME = "synthetic_qa"
QUESTION_TYPES = ("verify", "choose", "query")
REQUIRED_KEYS = ("heart_rate", "hr_category", "rhythm", "noisy", "low_voltage")

Meta = dict[str, Any]

# attribute -> (topic, question, truth). Topic groups questions a second turn should not repeat.
VERIFY: dict[str, tuple[str, str, Callable[[Meta], bool]]] = {
    "irregular_rhythm": ("rhythm", "Is the rhythm irregular?", lambda m: m["rhythm"] == "irregular"),
    "tachycardia": ("rate", "Is there tachycardia?", lambda m: m["hr_category"] == "tachycardia"),
    "bradycardia": ("rate", "Is there bradycardia?", lambda m: m["hr_category"] == "bradycardia"),
    "noisy": ("noise", "Is the recording noisy?", lambda m: bool(m["noisy"])),
    "low_voltage": ("voltage", "Is the QRS voltage low?", lambda m: bool(m["low_voltage"])),
}
# attribute -> (topic, question with {options}, all options, answer)
CHOOSE: dict[str, tuple[str, str, tuple[str, ...], Callable[[Meta], str]]] = {
    "hr_category": (
        "rate",
        "Is the heart rate {options}?",
        ("slow", "normal", "fast"),
        lambda m: {"bradycardia": "slow", "normal": "normal", "tachycardia": "fast"}[m["hr_category"]],
    ),
    "rhythm": ("rhythm", "Is the rhythm {options}?", ("regular", "irregular"), lambda m: m["rhythm"]),
    "noisy": ("noise", "Is the recording {options}?", ("clean", "noisy"), lambda m: "noisy" if m["noisy"] else "clean"),
    "low_voltage": (
        "voltage",
        "Is the QRS voltage {options}?",
        ("low", "normal"),
        lambda m: "low" if m["low_voltage"] else "normal",
    ),
}
# attribute -> (topic, question, answer)
QUERY: dict[str, tuple[str, str, Callable[[Meta], str]]] = {
    "hr_category": ("rate", "What is the heart rate category?", lambda m: m["hr_category"]),
    "rhythm": (
        "rhythm",
        "What is the rhythm?",
        lambda m: "sinus rhythm" if m["rhythm"] == "regular" else "atrial fibrillation",
    ),
    "heart_rate": (
        "rate",
        "What is the heart rate in beats per minute, rounded to the nearest 10?",
        lambda m: str(round_to_10(m["heart_rate"])),
    ),
}


def round_to_10(x: float) -> int:
    """Nearest multiple of 10, halves up (Python's round() would send 85 to 80)."""
    return int(math.floor(x / 10.0 + 0.5) * 10)


def _options_text(options: list[str]) -> str:
    return options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]


class _Asker:
    """Draws questions; keeps the (attribute, answer) counts that balance the verify answers."""

    def __init__(self, rng: np.random.Generator, question_types: list[str]):
        self.rng = rng
        self.types = question_types
        self.verify_counts: Counter[tuple[str, str]] = Counter()

    def ask(self, m: Meta, avoid_topics: set[str]) -> dict[str, Any] | None:
        """One question about ``m`` on a topic not in ``avoid_topics``, or None if none is left."""
        types = [t for t in self.types if self._candidates(t, avoid_topics)]
        if not types:
            return None
        qtype = types[int(self.rng.integers(len(types)))]
        cands = self._candidates(qtype, avoid_topics)
        if qtype == "verify":
            # Pick the attribute whose (attribute, true answer) cell has been used least; ties at random.
            answers = {a: "yes" if VERIFY[a][2](m) else "no" for a in cands}
            least = min(self.verify_counts[(a, answers[a])] for a in cands)
            best = [a for a in cands if self.verify_counts[(a, answers[a])] == least]
            attr = best[int(self.rng.integers(len(best)))]
            self.verify_counts[(attr, answers[attr])] += 1
            topic, question, answer = VERIFY[attr][0], VERIFY[attr][1], answers[attr]
        elif qtype == "choose":
            attr = cands[int(self.rng.integers(len(cands)))]
            topic, template, options, answer_of = CHOOSE[attr]
            shuffled = [options[i] for i in self.rng.permutation(len(options))]
            question, answer = template.format(options=_options_text(shuffled)), answer_of(m)
        else:
            attr = cands[int(self.rng.integers(len(cands)))]
            topic, question, answer_of = QUERY[attr]
            answer = answer_of(m)
        return {"question_type": qtype, "attribute": attr, "topic": topic, "question": question, "answer": answer}

    @staticmethod
    def _candidates(qtype: str, avoid_topics: set[str]) -> list[str]:
        table = {"verify": VERIFY, "choose": CHOOSE, "query": QUERY}[qtype]
        return [a for a, spec in table.items() if spec[0] not in avoid_topics]


@dataclass
class SyntheticQAOptions(MappedOptions):
    """Questions about the synthetic ECGs' ground truth (rate, rhythm, voltage, noise)."""

    question_types: list[str] = field(default_factory=lambda: ["verify", "choose", "query"])
    """Question forms: verify (yes/no), choose (pick an option), query (name a value)."""
    multi_turn_fraction: float = 0.0
    """Fraction of conversations with two question-answer turns."""

    def problems(self) -> list[str]:
        p = []
        bad = [t for t in self.question_types if t not in QUESTION_TYPES]
        if bad or not self.question_types:
            p.append(f"question_types: unknown {bad or '(empty)'}; valid: {', '.join(QUESTION_TYPES)}")
        if not 0.0 <= self.multi_turn_fraction <= 1.0:
            p.append(f"multi_turn_fraction must be in [0, 1], got {self.multi_turn_fraction}")
        return p


@MAPPED.register(NAME, options=SyntheticQAOptions)
def synthetic_qa(store: SegmentStore, cfg: DataConfig) -> list[dict[str, Any]]:
    """One conversation per segment about its ground truth (see the module docstring)."""
    opts = mapped_options(cfg, SyntheticQAOptions)
    bad = [t for t in opts.question_types if t not in QUESTION_TYPES]
    if bad or not opts.question_types:
        raise ConfigError([f"data.mapped.question_types: unknown {bad or '(empty)'}; valid: {', '.join(QUESTION_TYPES)}"])
    rng = np.random.default_rng([cfg.seed, 3])
    n = len(store)
    n_multi = int(round(opts.multi_turn_fraction * n))
    multi = set(rng.choice(n, size=n_multi, replace=False).tolist()) if n_multi else set()
    asker = _Asker(rng, list(dict.fromkeys(opts.question_types)))

    items = []
    for row in store.index:
        sid, m = row["segment_id"], row["metadata"]
        missing = [k for k in REQUIRED_KEYS if k not in m]
        if missing:
            raise DataError(
                f"segment {sid} (record {row['record_id']}) of store {store.path}: metadata lacks {missing}; "
                f"{NAME} needs a store built from the synthetic source"
            )
        turns = [asker.ask(m, set())]
        if sid in multi:
            second = asker.ask(m, {turns[0]["topic"]})
            if second is not None:
                turns.append(second)
        messages = []
        for k, turn in enumerate(turns):
            prefix = f"{ECG_MARKER}\n" if k == 0 else ""
            messages.append({"role": "user", "content": prefix + turn.pop("question")})
            messages.append({"role": "assistant", "content": turn["answer"]})
        item = {
            "id": f"{NAME}-{sid:06d}",
            "segment_ids": [sid],
            "messages": messages,
            "patient_id": row["patient_id"],
            "source": NAME,
            "meta": {
                "question_type": turns[0]["question_type"],
                "topic": turns[0]["topic"],
                "attribute": turns[0]["attribute"],
                "answer": turns[0]["answer"],
                "turns": turns,
                "record_id": row["record_id"],
                "dataset": store.meta.get("dataset"),
            },
        }
        validate_item(item, n)
        items.append(item)

    yes = sum(t["answer"] == "yes" for it in items for t in it["meta"]["turns"] if t["question_type"] == "verify")
    n_verify = sum(t["question_type"] == "verify" for it in items for t in it["meta"]["turns"])
    log.info(
        "%s: %d conversations (%d two-turn); verify answers yes %d / %d",
        NAME,
        len(items),
        sum(len(it["meta"]["turns"]) > 1 for it in items),
        yes,
        n_verify,
    )
    return items

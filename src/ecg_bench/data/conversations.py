"""The conversation item every mapped dataset produces, its validation and JSONL I/O.

An item::

    {
      "id": "synthetic_qa-000012",          # unique within the dataset
      "segment_ids": [12],                  # rows of the SegmentStore, one per <ecg> marker
      "messages": [{"role": "user", "content": "<ecg>\\nIs the rhythm irregular?"},
                   {"role": "assistant", "content": "no"}],
      "patient_id": "synth-p0006",          # folds never split a patient
      "source": "synthetic_qa",             # the mapped dataset that made it
      "meta": {...}                         # free, JSON-serialisable (question type, attribute, ...)
    }

The ``<ecg>`` marker in a user message is where the model puts the ECG embeddings; the i-th marker
stands for ``segment_ids[i]``. Chat formatting happens later, not here.

Two meta keys mean the same in every dataset that knows them, and evaluation reports scores per
value of each (``turn_labels``): ``question_type`` (ECG-QA: single-verify, ..., the synthetic and
label QA: verify / choose / query) and ``topic`` (what is asked about: ECG-QA's attribute type, the
synthetic QA's rate / rhythm / noise / voltage). ``meta.turns[k]`` may give them per assistant turn.
"""

from __future__ import annotations

from typing import Any

from ecg_bench.errors import DataError
from ecg_bench.jsonl import load_jsonl, save_jsonl  # noqa: F401  (part of this module's API)

ECG_MARKER = "<ecg>"
ROLES = ("system", "user", "assistant")


LABEL_KEYS = ("question_type", "topic")


def turn_labels(item: dict[str, Any], turn: int) -> dict[str, str | None]:
    """``question_type`` and ``topic`` of assistant turn ``turn`` of ``item`` (None where unknown):
    ``meta.turns[turn]``'s own when it has them, else the item's ``meta``."""
    meta = item.get("meta") or {}
    turns = meta.get("turns")
    own = turns[turn] if isinstance(turns, list) and 0 <= turn < len(turns) and isinstance(turns[turn], dict) else {}
    out = {}
    for key in LABEL_KEYS:
        value = own.get(key, meta.get(key))
        out[key] = None if value is None or value == "" else str(value)
    return out


def validate_item(item: Any, n_segments: int) -> None:
    """Raise DataError naming the item id and the bad field, or return None."""
    if not isinstance(item, dict):
        raise DataError(f"conversation item must be a dict, got {type(item).__name__}")
    iid = item.get("id")
    if not isinstance(iid, str) or not iid:
        raise DataError(f"item {iid!r}: field 'id' must be a non-empty string")

    def bad(field: str, what: str) -> DataError:
        return DataError(f"item {iid!r}: field {field!r} {what}")

    for key in ("segment_ids", "messages", "patient_id", "source", "meta"):
        if key not in item:
            raise bad(key, "is missing")
    seg = item["segment_ids"]
    if not isinstance(seg, list) or not seg:
        raise bad("segment_ids", f"must be a non-empty list of ints, got {seg!r}")
    for s in seg:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s < n_segments:
            raise bad("segment_ids", f"has {s!r}; expected ints in [0, {n_segments})")
    msgs = item["messages"]
    if not isinstance(msgs, list) or not msgs:
        raise bad("messages", "must be a non-empty list of {role, content}")
    turns = []
    for j, m in enumerate(msgs):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            raise bad(f"messages[{j}]", f"must be {{'role', 'content'}}, got {m!r}")
        if m["role"] not in ROLES:
            raise bad(f"messages[{j}].role", f"is {m['role']!r}; expected one of {', '.join(ROLES)}")
        if not isinstance(m["content"], str):
            raise bad(f"messages[{j}].content", f"must be a string, got {type(m['content']).__name__}")
        if m["role"] == "system":
            if j != 0:
                raise bad(f"messages[{j}].role", "is 'system'; only the first message may be a system message")
        else:
            turns.append((j, m["role"]))
    for k, (j, role) in enumerate(turns):
        expected = "user" if k % 2 == 0 else "assistant"
        if role != expected:
            raise bad(f"messages[{j}].role", f"is {role!r}; expected {expected!r} (user and assistant alternate)")
    if not turns or turns[-1][1] != "assistant":
        raise bad("messages", "must end with an assistant message")
    markers = sum(m["content"].count(ECG_MARKER) for m in msgs if m["role"] == "user")
    if markers != len(seg):
        raise bad(
            "messages",
            f"has {markers} {ECG_MARKER} marker(s) in user messages; expected {len(seg)} (one per segment id)",
        )
    for key in ("patient_id", "source"):
        if not isinstance(item[key], str) or not item[key]:
            raise bad(key, f"must be a non-empty string, got {item[key]!r}")
    if not isinstance(item["meta"], dict):
        raise bad("meta", f"must be a dict, got {type(item['meta']).__name__}")

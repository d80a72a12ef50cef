"""Patient-disjoint k-fold splits of conversation items.

Whole patients go to folds, so no patient's ECGs are both trained and tested on. Folds are balanced
by item count: patients are shuffled (seeded), stably sorted largest first, and each goes into the
fold that currently has the fewest items.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ecg_bench.errors import DataError


def patient_folds(items: Sequence[dict[str, Any]], num_folds: int, seed: int) -> list[int]:
    """Fold index (0 .. num_folds-1) of every item; all items of a patient share a fold."""
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    counts = Counter(_patient(it, i) for i, it in enumerate(items))
    if len(counts) < num_folds:
        raise DataError(f"{len(counts)} patients cannot fill {num_folds} patient-disjoint folds")
    patients = sorted(counts)
    order = np.random.default_rng([seed, 4]).permutation(len(patients))
    shuffled = [patients[i] for i in order]
    shuffled.sort(key=lambda p: -counts[p])  # stable: equal sizes keep the seeded order
    fold_size = [0] * num_folds
    fold_of_patient = {}
    for p in shuffled:
        f = min(range(num_folds), key=lambda k: (fold_size[k], k))
        fold_of_patient[p] = f
        fold_size[f] += counts[p]
    return [fold_of_patient[it["patient_id"]] for it in items]


def split(
    items: Sequence[dict[str, Any]], fold_of_item: Sequence[int], test_fold: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(train, test)``: test holds the items of ``test_fold``, train all the others (order kept)."""
    if len(items) != len(fold_of_item):
        raise ValueError(f"{len(items)} items but {len(fold_of_item)} fold indices")
    if test_fold not in set(fold_of_item):
        raise ValueError(f"test_fold {test_fold} has no items; folds present: {sorted(set(fold_of_item))}")
    train = [it for it, f in zip(items, fold_of_item, strict=True) if f != test_fold]
    test = [it for it, f in zip(items, fold_of_item, strict=True) if f == test_fold]
    return train, test


def check_patient_disjoint(train: Sequence[dict[str, Any]], test: Sequence[dict[str, Any]]) -> None:
    """Raise DataError listing the patient ids found in both ``train`` and ``test``."""
    overlap = sorted({it["patient_id"] for it in train} & {it["patient_id"] for it in test})
    if overlap:
        shown = ", ".join(overlap[:20]) + (f", ... ({len(overlap)} in all)" if len(overlap) > 20 else "")
        raise DataError(f"train and test share {len(overlap)} patient(s): {shown}")


def _patient(item: dict[str, Any], i: int) -> str:
    try:
        return item["patient_id"]
    except (KeyError, TypeError):
        raise DataError(f"item {i} ({item.get('id') if isinstance(item, dict) else item!r}): no 'patient_id'") from None

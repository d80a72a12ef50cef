"""Patient-disjoint k-fold splits of conversation items, stratified where labels allow.

Whole patients go to folds, so no patient's ECGs are both trained and tested on. An item about
ECGs of several patients (an ECG-QA comparison question; ``meta.patient_ids``) ties those
patients together: connected patients form one group and move as one.

Assignment (deterministic for a seed): groups are shuffled (seeded), stably sorted largest first
(among equal sizes, those with the rarest answer first), and each goes to the fold where it least
increases the squared distance of the folds' per-stratum item counts and sizes from their targets
(total / k). The stratum of an item is ``meta.stratum`` or else
``meta.answer`` (lower-cased); strata with fewer than k items are pooled, so free-text answers
leave only the size term. With ``stratify=False``, or when there is a single stratum, this is plain
size balancing: each group goes to the fold with the fewest items (ties: lowest index).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from ecg_bench.errors import DataError

RARE = "\x00rare"  # pooled stratum of labels too rare to spread over the folds


def item_patients(item: dict[str, Any], i: int = -1) -> list[str]:
    """Every patient an item involves: ``meta.patient_ids`` if given, else ``[patient_id]``."""
    try:
        pid = item["patient_id"]
    except (KeyError, TypeError):
        name = item.get("id") if isinstance(item, dict) else item
        raise DataError(f"item {i} ({name!r}): no 'patient_id'") from None
    meta = item.get("meta")
    extra = meta.get("patient_ids") if isinstance(meta, dict) else None
    return list(dict.fromkeys([pid, *(extra or [])]))


def stratum(item: dict[str, Any]) -> str:
    """The label folds are stratified on: ``meta.stratum``, else ``meta.answer``, else ""."""
    meta = item.get("meta") if isinstance(item.get("meta"), dict) else {}
    value = meta.get("stratum", meta.get("answer", ""))
    return str(value).strip().lower() if value is not None else ""


def patient_groups(items: Sequence[dict[str, Any]]) -> list[int]:
    """Group index of every item: items sharing a patient, directly or through others, share a group.

    Groups are numbered in the sorted order of their smallest patient id.
    """
    parent: dict[str, str] = {}

    def find(p: str) -> str:
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        return p

    patients_of = [item_patients(it, i) for i, it in enumerate(items)]
    for ps in patients_of:
        for p in ps:
            parent.setdefault(p, p)
        for p in ps[1:]:
            a, b = find(ps[0]), find(p)
            if a != b:
                parent[max(a, b)] = min(a, b)  # the root stays the smallest id
    roots = sorted({find(p) for p in parent})
    number = {r: k for k, r in enumerate(roots)}
    return [number[find(ps[0])] for ps in patients_of]


def patient_folds(items: Sequence[dict[str, Any]], num_folds: int, seed: int, stratify: bool = True) -> list[int]:
    """Fold index (0 .. num_folds-1) of every item; all items of a patient share a fold."""
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    group_of = patient_groups(items)
    n_groups = max(group_of, default=-1) + 1
    if n_groups < num_folds:
        raise DataError(f"{n_groups} patients (or linked patient groups) cannot fill {num_folds} patient-disjoint folds")
    labels = _strata(items, num_folds) if stratify else [""] * len(items)
    names = sorted(set(labels))
    col = {s: j for j, s in enumerate(names)}
    counts = np.zeros((n_groups, len(names)))
    for g, s in zip(group_of, labels):
        counts[g, col[s]] += 1
    sizes = counts.sum(axis=1)
    # rarest stratum of each group: among equal sizes, groups with rare answers are placed first,
    # while every fold can still take them
    totals = counts.sum(axis=0)
    rarity = np.where(counts > 0, totals, np.inf).min(axis=1)
    order = np.random.default_rng([seed, 4]).permutation(n_groups).tolist()
    order.sort(key=lambda g: (-sizes[g], rarity[g]))  # stable: ties keep the seeded order
    fold_of_group = _assign(order, counts, num_folds)
    return [int(fold_of_group[g]) for g in group_of]


def _strata(items: Sequence[dict[str, Any]], num_folds: int) -> list[str]:
    raw = [stratum(it) for it in items]
    freq = Counter(raw)
    return [s if freq[s] >= num_folds else RARE for s in raw]


def _assign(order: list[int], counts: np.ndarray, k: int) -> np.ndarray:
    """Greedy: each group (in ``order``) to the fold minimising the increase of
    sum_strata (fold count - target)^2 + (fold size - target size)^2; ties to the smaller, then lower fold.
    With one stratum both terms rank folds by size alone."""
    target = counts.sum(axis=0) / k
    size_target = counts.sum() / k
    fold_counts = np.zeros((k, counts.shape[1]))
    fold_sizes = np.zeros(k)
    fold_of_group = np.full(len(counts), -1)
    for g in order:
        c, n = counts[g], counts[g].sum()
        delta = ((fold_counts + c - target) ** 2 - (fold_counts - target) ** 2).sum(axis=1)
        delta += (fold_sizes + n - size_target) ** 2 - (fold_sizes - size_target) ** 2
        f = min(range(k), key=lambda j: (round(float(delta[j]), 9), fold_sizes[j], j))
        fold_of_group[g] = f
        fold_counts[f] += c
        fold_sizes[f] += n
    return fold_of_group


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
    """Raise DataError listing the patient ids found in both ``train`` and ``test`` (every patient
    of an item counts, see ``item_patients``)."""
    train_p = {p for i, it in enumerate(train) for p in item_patients(it, i)}
    test_p = {p for i, it in enumerate(test) for p in item_patients(it, i)}
    overlap = sorted(train_p & test_p)
    if overlap:
        shown = ", ".join(overlap[:20]) + (f", ... ({len(overlap)} in all)" if len(overlap) > 20 else "")
        raise DataError(f"train and test share {len(overlap)} patient(s): {shown}")


def check_folds(items: Sequence[dict[str, Any]], fold_of_item: Sequence[int]) -> None:
    """Prove the fold assignment patient-disjoint: for every fold, no patient of its test items is
    in its train items. Raises DataError naming the fold and the shared patients."""
    for f in sorted(set(fold_of_item)):
        train, test = split(items, fold_of_item, f)
        try:
            check_patient_disjoint(train, test)
        except DataError as e:
            raise DataError(f"fold {f}: {e}") from None


def check_fold_splits(splits: dict[str, tuple[Sequence[dict[str, Any]], Sequence[dict[str, Any]]]]) -> None:
    """Like ``check_folds`` for folds given as explicit ``{name: (train, test)}`` (imported datasets)."""
    for name, (train, test) in splits.items():
        try:
            check_patient_disjoint(train, test)
        except DataError as e:
            raise DataError(f"{name}: {e}") from None


def holdout_patients(
    items: Sequence[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``(kept, held_out)``: a seeded ``fraction`` of the patients of ``items`` (whole linked patient groups,
    at least one, never all) held out, e.g. the validation slice of the training patients; order kept."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    group_of = patient_groups(items)
    n_groups = max(group_of, default=-1) + 1
    if n_groups < 2:
        raise DataError(f"{n_groups} patient group(s) in the training data: cannot hold out a patient-disjoint slice")
    k = min(n_groups - 1, max(1, round(fraction * n_groups)))
    held = set(np.random.default_rng([seed, 7]).permutation(n_groups)[:k].tolist())
    kept = [it for it, g in zip(items, group_of) if g not in held]
    out = [it for it, g in zip(items, group_of) if g in held]
    return kept, out


OFFICIAL_SPLITS = ("train", "valid", "test")


def official_split(items: Sequence[dict[str, Any]]) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Any]]:
    """The items by their release split (``meta.split``: train / valid / test) and a report of the patients
    the splits share (a release's split need not be patient-disjoint: it is reported, not changed).

    Report: ``{"items": {split: n}, "patients": {split: n}, "overlap": {"train-test": {"patients": k,
    "items": m (of the second split), "patient_ids": first 20}, ...}, "patient_disjoint": bool}``.
    DataError when an item has no release split (a dataset without one: use the folds)."""
    parts: dict[str, list[dict[str, Any]]] = {s: [] for s in OFFICIAL_SPLITS}
    missing = []
    for it in items:
        meta = it.get("meta") if isinstance(it.get("meta"), dict) else {}
        s = meta.get("split")
        if s in parts:
            parts[s].append(it)
        else:
            missing.append(it.get("id"))
    if missing:
        raise DataError(f"data.split official: {len(missing)} item(s) carry no release split (meta.split train, valid or "
                        f"test), e.g. {missing[:3]}; only datasets with an official split (ECG-QA) have one: "
                        f"use data.split folds")  # fmt: skip
    patients = {s: {p for i, it in enumerate(v) for p in item_patients(it, i)} for s, v in parts.items()}
    overlap = {}
    for a, b in (("train", "test"), ("valid", "test"), ("train", "valid")):
        shared = patients[a] & patients[b]
        n_items = sum(1 for i, it in enumerate(parts[b]) if shared & set(item_patients(it, i)))
        overlap[f"{a}-{b}"] = {"patients": len(shared), "items": n_items, "patient_ids": sorted(shared)[:20]}
    report = {
        "items": {s: len(v) for s, v in parts.items()},
        "patients": {s: len(v) for s, v in patients.items()},
        "overlap": overlap,
        "patient_disjoint": not any(o["patients"] for o in overlap.values()),
    }
    return parts, report

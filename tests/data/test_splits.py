from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from ecg_bench.config import DataConfig
from ecg_bench.data.mapped.synthetic_qa import synthetic_qa
from ecg_bench.data.splits import check_folds, check_patient_disjoint, patient_folds, patient_groups, split
from ecg_bench.errors import DataError
from config_helpers import data_config


@pytest.fixture(scope="module")
def items(store):
    return synthetic_qa(store, data_config(seed=0))


def test_folds_are_patient_disjoint_and_balanced(items):
    folds = patient_folds(items, num_folds=5, seed=0)
    assert len(folds) == len(items) and set(folds) == set(range(5))
    fold_of_patient = {}
    for it, f in zip(items, folds, strict=True):
        assert fold_of_patient.setdefault(it["patient_id"], f) == f
    sizes = Counter(folds)
    assert max(sizes.values()) - min(sizes.values()) <= 10  # one patient = 10 items here
    for k in range(5):
        train, test = split(items, folds, k)
        assert len(train) + len(test) == len(items) and test
        check_patient_disjoint(train, test)


def test_balancing_with_unequal_patients():
    sizes = [9, 1, 1, 1, 4, 4, 3, 2, 2, 1]
    items = [{"id": f"{p}-{j}", "patient_id": f"p{p}"} for p, n in enumerate(sizes) for j in range(n)]
    folds = patient_folds(items, 3, seed=0)
    assert sorted(Counter(folds).values()) == [9, 9, 10]


def test_folds_seeded(items):
    a = patient_folds(items, 5, seed=0)
    assert a == patient_folds(items, 5, seed=0)
    assert a != patient_folds(items, 5, seed=1)


def test_leak_is_caught(items):
    folds = patient_folds(items, 5, seed=0)
    train, test = split(items, folds, 0)
    leaked = test[0]
    with pytest.raises(DataError, match=leaked["patient_id"]):
        check_patient_disjoint(train + [leaked], test)


def test_too_few_patients():
    items = [{"id": "a", "patient_id": "p1"}, {"id": "b", "patient_id": "p2"}]
    with pytest.raises(DataError, match="2 patients"):
        patient_folds(items, 3, seed=0)
    with pytest.raises(ValueError, match="fold indices"):
        split(items, [0], 0)


def _size_balanced_reference(items, num_folds, seed):
    """The fold assignment before stratification: seeded shuffle, largest patient first, smallest fold."""
    counts = Counter(it["patient_id"] for it in items)
    patients = sorted(counts)
    shuffled = [patients[i] for i in np.random.default_rng([seed, 4]).permutation(len(patients))]
    shuffled.sort(key=lambda p: -counts[p])
    size, fold_of = [0] * num_folds, {}
    for p in shuffled:
        f = min(range(num_folds), key=lambda k: (size[k], k))
        fold_of[p], size[f] = f, size[f] + counts[p]
    return [fold_of[it["patient_id"]] for it in items]


def test_unstratified_is_the_size_balanced_assignment(items):
    assert patient_folds(items, 5, seed=3, stratify=False) == _size_balanced_reference(items, 5, 3)
    unlabeled = [{"id": it["id"], "patient_id": it["patient_id"]} for it in items]  # one stratum: same as unstratified
    assert patient_folds(unlabeled, 5, seed=3) == _size_balanced_reference(items, 5, 3)


def test_stratified_folds_balance_answers():
    answers = ["yes"] * 20 + ["no"] * 15 + ["maybe"] * 5 + ["rare-a", "rare-b"]
    items = [{"id": str(i), "patient_id": f"p{i}", "meta": {"answer": a}} for i, a in enumerate(answers)]
    folds = patient_folds(items, 5, seed=0)
    per_fold = Counter((f, it["meta"]["answer"]) for it, f in zip(items, folds))
    for answer, n in (("yes", 4), ("no", 3), ("maybe", 1)):
        assert [per_fold[(f, answer)] for f in range(5)] == [n] * 5
    plain = Counter((f, it["meta"]["answer"]) for it, f in zip(items, patient_folds(items, 5, seed=0, stratify=False)))
    assert [plain[(f, "yes")] for f in range(5)] != [4] * 5  # size balancing alone does not spread the answers


def test_patients_linked_by_a_comparison_item_share_a_fold():
    items = [{"id": f"s{i}", "patient_id": f"p{i}", "meta": {}} for i in range(12)]
    items.append({"id": "cmp", "patient_id": "p0", "meta": {"patient_ids": ["p0", "p7"]}})
    assert patient_groups(items)[0] == patient_groups(items)[7] == patient_groups(items)[-1]
    folds = patient_folds(items, 4, seed=0)
    assert folds[0] == folds[7] == folds[-1]
    check_folds(items, folds)
    bad = list(folds)
    bad[7] = (folds[0] + 1) % 4  # p7 alone in another fold: the comparison item leaks p7 into its test set
    with pytest.raises(DataError, match=r"fold \d: train and test share 1 patient\(s\): p7"):
        check_folds(items, bad)

from __future__ import annotations

from collections import Counter

import pytest

from ecg_bench.config import DataConfig
from ecg_bench.data.mapped.synthetic_qa import synthetic_qa
from ecg_bench.data.splits import check_patient_disjoint, patient_folds, split
from ecg_bench.errors import DataError


@pytest.fixture(scope="module")
def items(store):
    return synthetic_qa(store, DataConfig(seed=0))


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

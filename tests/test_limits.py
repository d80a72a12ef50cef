"""Bounded reading of untrusted structures: iterative walk, shared references counted, JSON nesting."""

from __future__ import annotations

import pytest

from ecg_bench.errors import DataError
from ecg_bench.jsonl import load_jsonl
from ecg_bench.limits import check_structure, load_json_file, short_repr


def test_shared_references_count_at_every_use_and_stop_the_walk():
    x: list = [0]
    for _ in range(60):  # 2^60 nodes when expanded, 61 objects in memory
        x = [x, x]
    with pytest.raises(DataError, match="dag: more than 1,000 values"):
        check_structure(x, "dag", max_depth=100, max_nodes=1000)
    assert check_structure({"a": [1, "b", (2, 3)]}, "ok") == 8  # root, key + list, 1, "b", tuple, 2, 3
    assert len(short_repr(x)) < 100


def test_deep_nesting_and_long_strings_are_refused_without_recursion():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(DataError, match="deep: nested deeper than 64 levels"):
        check_structure(deep, "deep")
    with pytest.raises(DataError, match=r"s: str at \['k'\]\[1\] has 11 characters/bytes, more than the 10"):
        check_structure({"k": ["ok", "x" * 11]}, "s", max_string=10)


def test_json_files_deeper_than_the_parser_can_go_are_data_errors(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataError, match="deep.json: .*nested too deeply"):
        load_json_file(deep, "test document")
    lines = tmp_path / "conv.jsonl"
    lines.write_text('{"id": 1}\n{"a": ' + "[" * 200_000 + "]" * 200_000 + "}\n")
    with pytest.raises(DataError, match="conv.jsonl:2: JSON nested too deeply"):
        load_jsonl(lines)
    big = tmp_path / "big.json"
    big.write_text("[" + "1," * 100 + "1]")
    with pytest.raises(DataError, match="big.json: 203 bytes is larger than the 100 bytes"):
        load_json_file(big, "test document", max_bytes=100)

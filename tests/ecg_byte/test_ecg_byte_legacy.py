"""Importing the original ECG-Bench pickled tokenizer safely, and matching its encoder's ids."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np
import pytest

from ecg_bench.ecg_byte import ECGByteTokenizer, import_pickle, read_legacy_pickle
from ecg_bench.errors import DataError


class _Plain(pickle.Unpickler):
    def find_class(self, module, name):
        raise AssertionError(f"test reader refuses {module}.{name}")


def original_encode_symbol(text: str, merges: list[tuple[list[int], int]]) -> list[int]:
    """Line-by-line Python port of the original's Rust ``encode_symbol``: byte trie, longest match."""
    root: dict = {}

    def insert(seq, tid):
        node = root
        for b in seq:
            node = node.setdefault(b, {})
        node[None] = tid

    for b in range(256):
        insert([b], b)
    for seq, tid in merges:
        insert(seq, tid)
    ids, out, i = list(text.encode()), [], 0
    while i < len(ids):
        node, match = root, None
        for j in range(i, len(ids)):
            if ids[j] not in node:
                break
            node = node[ids[j]]
            if None in node:
                match = (node[None], j - i + 1)
        out.append(match[0] if match else ids[i])
        i += match[1] if match else 1
    return out


def test_import_keeps_every_merge_and_the_original_ids(legacy_pickle, tmp_path):
    vocab, merges = _Plain(io.BytesIO(legacy_pickle.read_bytes())).load()
    tok = import_pickle(legacy_pickle)
    assert tok.vocab_size == 26 + len(merges) == 1026
    assert tok.legacy_ids[:26] == list(range(97, 123)) and tok.legacy_ids[26:] == [tid for _, tid in merges]
    for i, legacy in enumerate(tok.legacy_ids):
        assert tok.vocab[i] == vocab[legacy]
    loaded = ECGByteTokenizer.load(tok.save(tmp_path / "imported.json"))
    assert loaded.legacy_ids == tok.legacy_ids and loaded.meta["imported_from"] == str(legacy_pickle)


def test_imported_ids_equal_the_original_encoder_on_real_records(legacy_pickle, ptbxl_signals):
    _, merges = read_legacy_pickle(legacy_pickle)
    tok = import_pickle(legacy_pickle)
    batch, _ = tok.encode_signals(np.stack(ptbxl_signals))
    for sig, batch_ids in zip(ptbxl_signals, batch):
        symbols = tok.symbolize(sig)
        ids = tok.encode(symbols)
        assert ids == batch_ids.tolist()
        assert tok.to_legacy_ids(ids) == original_encode_symbol(symbols, merges)
        assert tok.decode(ids) == symbols


def test_real_records_round_trip_within_one_quantization_step(legacy_pickle, ptbxl_signals):
    tok = import_pickle(legacy_pickle)
    for sig in ptbxl_signals:
        symbols, params = tok.symbolize_with_params(sig)
        ids = tok.encode(symbols)
        assert tok.decode(ids) == symbols
        step = float(tok.quantization_step(params)[0])  # the record's range / 26
        assert step == pytest.approx((sig.max() - sig.min()) / 26, rel=1e-4)
        assert np.abs(tok.reconstruct(ids, params) - sig).max() <= step / 2 + 1e-5


class _Payload:
    """Pickles to GLOBAL os.system + REDUCE: loading it with pickle.load would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps(({97: "a"}, [_Payload(marker)])))
    assert b"system" in bad.read_bytes()
    with pytest.raises(DataError, match="evil.pkl") as info:
        import_pickle(bad)
    assert "os.system" in str(info.value) or "posix.system" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "obj, message",
    [
        ([1, 2, 3], "expected a pickled"),
        (({"a": "b"}, []), "vocab must map int"),
        (({97: "a"}, [([300], 256)]), "merges\\[0\\]"),
        (({97: "a", 256: "ab"}, [([97, 98], 256), ([97, 98, 99], 257)]), None),
    ],
)
def test_wrongly_shaped_pickles_are_refused(tmp_path, obj, message):
    path = tmp_path / "odd.pkl"
    path.write_bytes(pickle.dumps(obj))
    if message is None:  # a well-formed small one imports (ids not in the vocab dict are still checked)
        tok = import_pickle(path)
        assert tok.vocab[26:] == ["ab", "abc"] and tok.to_legacy_ids(tok.encode("abcab")) == [257, 256]
        return
    with pytest.raises(DataError, match=message):
        import_pickle(path)


def test_class_instances_are_refused_even_harmless_ones(tmp_path):
    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps(({97: "a"}, [(np.array([1]), 256)])))
    with pytest.raises(DataError, match="refused to load global numpy"):
        import_pickle(path)


# ---------------------------------------------------------------------------------------------- bombs


def _shared_reference_bomb() -> bytes:
    """~0.5 kB pickle whose merges[0] shares lists 3 levels deep: 4 x 64^3 = 10^6 ints when walked."""
    leaf = [0, 0, 0, 0]
    x = [[[leaf] * 64] * 64] * 64
    return pickle.dumps(({97: "a"}, [x]), protocol=2)


def test_shared_reference_pickle_is_refused_without_expanding_it(tmp_path):
    import tracemalloc

    path = tmp_path / "bomb.pkl"
    path.write_bytes(_shared_reference_bomb())
    assert path.stat().st_size < 1000
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="bomb.pkl") as info:
            import_pickle(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the old message built the full repr (3 MB here, 3.1 GB for a 263-byte file 30 levels deep)
    assert peak < 1_000_000, f"refusal allocated {peak} bytes"
    assert len(str(info.value)) < 400


def test_deeply_nested_pickle_is_a_data_error_not_a_recursion_error(tmp_path):
    n = 200_000  # ({} , [[[...200k deep...]]]) written opcode by opcode: pickle.dumps itself would recurse
    path = tmp_path / "deep.pkl"
    path.write_bytes(b"\x80\x02}]" + b"]" * n + b"a" * n + b"\x86.")
    with pytest.raises(DataError, match="deep.pkl.*nested deeper"):
        import_pickle(path)


def test_pickle_larger_than_the_cap_is_refused_before_unpickling(tmp_path, monkeypatch, legacy_pickle):
    from ecg_bench.ecg_byte import legacy

    monkeypatch.setattr(legacy, "MAX_PICKLE_BYTES", 1000, raising=False)
    loads = []
    monkeypatch.setattr(legacy._ContainersOnly, "load", lambda self: loads.append(1))
    with pytest.raises(DataError, match="larger than the 1,000 bytes"):
        import_pickle(legacy_pickle)
    assert not loads

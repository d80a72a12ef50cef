"""ECGByteTokenizer: training on a store, the public API, save/load as JSON, and refusing bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ecg_bench.ecg_byte import ECGByteTokenizer, SymbolConfig, train_tokenizer
from ecg_bench.ecg_byte.bpe import train_merges
from ecg_bench.ecg_byte.greedy import greedy_reference
from ecg_bench.errors import ConfigError, DataError


def test_trained_vocabulary_is_consistent(byte_tokenizer, byte_store):
    tok = byte_tokenizer
    assert tok.vocab_size == 200 and tok.token_strings()[:26] == list("abcdefghijklmnopqrstuvwxyz")
    for k, (left, right) in enumerate(tok.merges):
        assert tok.vocab[left] + tok.vocab[right] == tok.vocab[26 + k] and max(left, right) < 26 + k
    assert tok.leads == tuple(byte_store.meta["leads"]) and tok.fs == 250 and tok.segment_len == 500
    assert tok.meta["num_samples"] == len(byte_store)


def test_round_trip_and_reconstruction_on_store_segments(byte_tokenizer, byte_store):
    tok = byte_tokenizer
    signals = byte_store.signals(range(len(byte_store)))
    batch_ids, params = tok.encode_signals(signals)
    total_symbols = total_tokens = 0
    for i, sig in enumerate(signals):
        symbols, p = tok.symbolize_with_params(sig)
        ids = tok.encode(symbols)
        assert ids == batch_ids[i].tolist() == tok.encode_signal(sig)
        assert tok.decode(ids) == symbols and len(symbols) == 12 * 500
        if i < 5:  # the plain-Python reference is slow
            assert ids == greedy_reference(symbols, dict(enumerate(tok.vocab)))
        np.testing.assert_array_equal(p.mins, params[i].mins)
        err = np.abs(tok.reconstruct(ids, p) - sig)
        assert err.max() <= tok.quantization_step(p).max() / 2 + 1e-5
        np.testing.assert_array_equal(tok.reconstruct(symbols, p), tok.reconstruct(ids, p))
        total_symbols, total_tokens = total_symbols + len(symbols), total_tokens + len(ids)
    assert total_symbols / total_tokens > 2.0  # BPE merges do compress (measured ~3 on this store)


def test_more_merges_compress_more(byte_store):
    small = train_tokenizer(byte_store, vocab_size=60, num_samples=0)
    large = train_tokenizer(byte_store, vocab_size=400, num_samples=0)
    sig = byte_store.signal(0)
    assert len(large.encode_signal(sig)) < len(small.encode_signal(sig)) < len(sig.ravel())


def test_training_is_seeded_and_samples_the_store(byte_store):
    a = train_tokenizer(byte_store, vocab_size=80, num_samples=10, seed=1)
    b = train_tokenizer(byte_store, vocab_size=80, num_samples=10, seed=1)
    c = train_tokenizer(byte_store, vocab_size=80, num_samples=10, seed=2)
    assert a.vocab == b.vocab and a.vocab != c.vocab and a.meta["num_samples"] == 10


def test_train_on_an_array_and_lead_scope():
    rng = np.random.default_rng(0)
    signals = np.cumsum(rng.normal(size=(8, 3, 300)), axis=2).astype(np.float32)
    tok = train_tokenizer(signals, vocab_size=50, num_samples=0, symbols=SymbolConfig(scope="lead"))
    ids, params = tok.encode_signals(signals)
    assert params.mins.shape == (8, 3) and tok.segment_len == 300 and tok.leads is None
    assert np.abs(tok.reconstruct(ids[0], params[0]) - signals[0]).max() <= tok.quantization_step(params[0]).max()


def test_merges_stop_when_the_corpus_runs_out_of_pairs():
    vocab, merges = train_merges(["abab"], num_merges=50)
    assert vocab[26:] == ["ab", "abab"] and merges == [(0, 1), (26, 26)]


def test_save_load_round_trip(byte_tokenizer, tmp_path):
    path = byte_tokenizer.save(tmp_path / "sub" / "tok.json")
    doc = json.loads(path.read_text())
    assert doc["format"] == "ecg-byte-tokenizer" and doc["format_version"] == 1 and doc["symbols"]["scope"] == "segment"
    loaded = ECGByteTokenizer.load(path)
    assert loaded.to_dict() == byte_tokenizer.to_dict()
    symbols = "klmnopqrst" * 30
    assert loaded.encode(symbols) == byte_tokenizer.encode(symbols)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format_version=99), "format_version"),
        (lambda d: d.update(format="something"), "'format'"),
        (lambda d: d["merges"].__setitem__(0, [3, 4]), "merges'\\[0\\]"),
        (lambda d: d["vocab"].__setitem__(30, "kZ"), "vocab'\\[30\\]"),
        (lambda d: d["vocab"].__setitem__(0, "b"), "26 symbols"),
        (lambda d: d["merges"].pop(), "one per merged id"),
        (lambda d: d["symbols"].update(scope="x"), "symbols.scope"),
    ],
)
def test_load_refuses_inconsistent_files_naming_them(byte_tokenizer, tmp_path, edit, message):
    doc = byte_tokenizer.to_dict()
    doc = json.loads(json.dumps(doc))
    edit(doc)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match=message) as info:
        ECGByteTokenizer.load(path)
    assert str(path) in str(info.value)


def test_load_errors_for_missing_and_non_json_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        ECGByteTokenizer.load(tmp_path / "nope.json")
    (tmp_path / "x.json").write_bytes(b"\x80\x04not json")
    with pytest.raises(DataError, match="x.json"):
        ECGByteTokenizer.load(tmp_path / "x.json")


def test_decode_refuses_unknown_ids_and_vocab_size_is_checked(byte_tokenizer):
    with pytest.raises(DataError, match="token id 200"):
        byte_tokenizer.decode([1, 200])
    with pytest.raises(ConfigError, match="vocab_size"):
        train_tokenizer(np.zeros((2, 1, 10), np.float32), vocab_size=10)
    with pytest.raises(DataError, match="not imported"):
        byte_tokenizer.to_legacy_ids([1])


# ---------------------------------------------------------------------------------------------- bounds


def _doubling_tokenizer_doc(doublings: int) -> dict:
    """A valid tokenizer document whose merges double 'a': the last token has 2**doublings symbols."""
    from ecg_bench.ecg_byte.symbols import ALPHABET

    vocab, merges = list(ALPHABET), []
    for k in range(doublings):
        left = 0 if k == 0 else len(vocab) - 1
        merges.append([left, left])
        vocab.append("a" * 2 ** (k + 1))
    return {"format": "ecg-byte-tokenizer", "format_version": 1, "alphabet": ALPHABET, "vocab": vocab, "merges": merges}


def test_a_token_longer_than_the_limit_is_refused_before_the_matcher_is_built(tmp_path, monkeypatch):
    from ecg_bench.ecg_byte import greedy, tokenizer

    path = tmp_path / "long.json"
    path.write_text(json.dumps(_doubling_tokenizer_doc(17)))  # 2**17 = 131,072 symbols in id 42 (260 kB file)
    built = []
    monkeypatch.setattr(greedy.GreedyMatcher, "__init__", lambda self, tokens: built.append(len(tokens)))
    with pytest.raises(DataError, match=r"long.json: token id 42 has 131,072 symbols, more than the 65,536"):
        tok = ECGByteTokenizer.load(path)
        tok.encode("ab")  # the old code loaded it; the trie (2.2 GB for a 4M-symbol token) came with the first use
    assert not built
    assert tokenizer.MAX_TOKEN_SYMBOLS == 65_536
    ECGByteTokenizer.load(_write(tmp_path / "ok.json", _doubling_tokenizer_doc(16)))  # 65,536 symbols: accepted


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return path


def test_vocabulary_size_and_total_symbols_are_bounded(tmp_path, monkeypatch):
    from ecg_bench.ecg_byte import tokenizer

    path = _write(tmp_path / "big.json", _doubling_tokenizer_doc(10))
    monkeypatch.setattr(tokenizer, "MAX_VOCAB_SIZE", 30, raising=False)
    with pytest.raises(DataError, match="big.json: 'vocab' has 36 ids, more than the 30 allowed"):
        ECGByteTokenizer.load(path)
    monkeypatch.setattr(tokenizer, "MAX_VOCAB_SIZE", 1000, raising=False)
    monkeypatch.setattr(tokenizer, "MAX_TOTAL_SYMBOLS", 1000, raising=False)
    with pytest.raises(DataError, match="big.json: the tokens up to id 34 have 1,048 symbols in all, more than the 1,000"):
        ECGByteTokenizer.load(path)


def test_deeply_nested_or_oversized_tokenizer_json_is_a_data_error(tmp_path, monkeypatch):
    from ecg_bench.ecg_byte import tokenizer

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataError, match="deep.json.*nested too deeply"):
        ECGByteTokenizer.load(deep)
    nested: list = [1]
    for _ in range(20):
        nested = [nested]
    meta = _doubling_tokenizer_doc(2) | {"meta": {"a": nested}}
    with pytest.raises(DataError, match="nested.json: nested deeper than 16 levels"):
        ECGByteTokenizer.load(_write(tmp_path / "nested.json", meta))
    monkeypatch.setattr(tokenizer, "MAX_FILE_BYTES", 100, raising=False)
    with pytest.raises(DataError, match="small.json: .* larger than the 100 bytes"):
        ECGByteTokenizer.load(_write(tmp_path / "small.json", _doubling_tokenizer_doc(2)))

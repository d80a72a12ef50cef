"""The vectorized greedy longest-match encoder against a plain-Python trie walk."""

from __future__ import annotations

import numpy as np
import pytest

from ecg_bench.ecg_byte.greedy import GreedyMatcher, greedy_reference
from ecg_bench.ecg_byte.symbols import ALPHABET, levels_to_str, str_to_levels


def _trie_walk(text: str, vocab: list[str]) -> list[int]:
    """Longest match by walking a dict trie, as the original's Rust ``encode_symbol`` does."""
    root: dict = {}
    for tid, s in enumerate(vocab):
        node = root
        for ch in s:
            node = node.setdefault(ch, {})
        node["id"] = tid
    out, i = [], 0
    while i < len(text):
        node, best = root, None
        for j in range(i, len(text)):
            if text[j] not in node:
                break
            node = node[text[j]]
            if "id" in node:
                best = (node["id"], j - i + 1)
        out.append(best[0])
        i += best[1]
    return out


def _random_vocab(rng, n_tokens: int) -> list[str]:
    vocab = list(ALPHABET)
    while len(vocab) < n_tokens:
        a, b = vocab[rng.integers(len(vocab))], vocab[rng.integers(len(vocab))]
        if a + b not in vocab and len(a + b) <= 12:
            vocab.append(a + b)
    return vocab


def _text(rng, n: int, alphabet: str = "klmnop") -> str:
    return "".join(rng.choice(list(alphabet), size=n))


def test_matches_a_trie_walk_on_random_vocabularies():
    rng = np.random.default_rng(0)
    for trial in range(5):
        vocab = _random_vocab(rng, 150)
        matcher = GreedyMatcher([str_to_levels(s) for s in vocab])
        texts = [_text(rng, int(n)) for n in rng.integers(1, 400, size=6)] + ["z", "azbycx"]
        got = matcher.encode_many([str_to_levels(t) for t in texts])
        for t, ids in zip(texts, got):
            assert ids.tolist() == _trie_walk(t, vocab), f"trial {trial}"
            assert "".join(vocab[i] for i in ids) == t


def test_batch_equals_one_by_one_and_never_spans_two_strings():
    vocab = list(ALPHABET) + ["ab", "ba", "abab"]
    matcher = GreedyMatcher([str_to_levels(s) for s in vocab])
    texts = ["aba", "bab", "ab", "a"]  # "aba"+"bab" would contain "abab" across the boundary
    batch = matcher.encode_many([str_to_levels(t) for t in texts])
    assert [b.tolist() for b in batch] == [matcher.encode_many([str_to_levels(t)])[0].tolist() for t in texts]
    assert [b.tolist() for b in batch] == [[26, 0], [27, 1], [26], [0]]


def test_longest_match_not_merge_order():
    # merges-in-order BPE would give "ab"+"cd" here (ab merged first); longest match takes "abc" + "d"
    vocab = list(ALPHABET) + ["ab", "cd", "bc", "abc"]
    matcher = GreedyMatcher([str_to_levels(s) for s in vocab])
    assert matcher.encode_many([str_to_levels("abcd")])[0].tolist() == [29, 3]


def test_later_id_wins_for_a_repeated_string_like_the_original_trie():
    vocab = list(ALPHABET) + ["ab", "ab"]
    matcher = GreedyMatcher([str_to_levels(s) for s in vocab])
    assert matcher.encode_many([str_to_levels("abab")])[0].tolist() == [27, 27]
    assert greedy_reference("abab", dict(enumerate(vocab))) == [27, 27]


def test_vocabulary_without_every_base_symbol_is_refused():
    with pytest.raises(ValueError, match="levels \\[25\\]"):
        GreedyMatcher([str_to_levels(c) for c in ALPHABET[:25]])


def test_reference_function_agrees_with_the_trie_walk():
    rng = np.random.default_rng(3)
    vocab = _random_vocab(rng, 80)
    text = levels_to_str(rng.integers(0, 26, size=300).astype(np.uint8))
    assert greedy_reference(text, dict(enumerate(vocab))) == _trie_walk(text, vocab)


def test_lockstep_and_all_positions_walks_agree_with_empty_and_ragged_sequences():
    rng = np.random.default_rng(7)
    vocab = _random_vocab(rng, 120)
    matcher = GreedyMatcher([str_to_levels(s) for s in vocab])
    texts = [_text(rng, int(n), "jklmno") for n in rng.integers(0, 300, size=40)] + ["", "k" * 500]
    seqs = [str_to_levels(t) for t in texts]
    lock, allpos = matcher.encode_lockstep(seqs), matcher.encode_all_positions(seqs)
    assert len(lock) == len(allpos) == len(texts)
    for t, a, b in zip(texts, lock, allpos):
        assert a.tolist() == b.tolist() == _trie_walk(t, vocab)
    assert matcher.encode_many(seqs)[-2].tolist() == [] and len(matcher.encode_many(seqs)) == len(texts)


def test_tokens_longer_than_the_vectorized_depth_are_matched():
    vocab = list(ALPHABET) + ["k" * 2**i for i in range(1, 8)] + ["k" * 100 + "l", "kl"]
    matcher = GreedyMatcher([str_to_levels(s) for s in vocab])
    assert matcher.max_len > GreedyMatcher.VECTOR_DEPTH
    texts = ["k" * 300 + "l", "k" * 101, "k" * 100 + "lk" * 7, "l" + "k" * 255]
    seqs = [str_to_levels(t) for t in texts]
    for t, a, b in zip(texts, matcher.encode_all_positions(seqs), matcher.encode_lockstep(seqs)):
        assert a.tolist() == b.tolist() == _trie_walk(t, vocab)
    assert [vocab[i] for i in matcher.encode_all_positions(seqs[:1])[0]] == ["k" * 128] * 2 + ["k" * 32, "k" * 8, "k" * 4, "l"]

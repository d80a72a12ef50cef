"""ECG-Byte: ECG segment -> normalized -> 26 symbols 'a'..'z' -> leads flattened -> BPE token ids.

    from ecg_bench.ecg_byte import ECGByteTokenizer, train_tokenizer
    tok = train_tokenizer(store, vocab_size=5000, num_samples=10000, seed=0)
    tok.save("tok.json"); tok = ECGByteTokenizer.load("tok.json")
    symbols, params = tok.symbolize_with_params(signal)      # signal: float32 [leads, L] in mV
    ids = tok.encode(symbols); assert tok.decode(ids) == symbols
    approx = tok.reconstruct(ids, params)                     # [leads, L], error <= half a level

Original ECG-Bench pickles: ``import_pickle(path)`` (restricted unpickler, never runs code).
"""

from ecg_bench.ecg_byte.legacy import import_pickle, read_legacy_pickle
from ecg_bench.ecg_byte.symbols import ALPHABET, NUM_LEVELS, NormParams, SymbolConfig
from ecg_bench.ecg_byte.tokenizer import ECGByteTokenizer
from ecg_bench.ecg_byte.train import train_tokenizer

__all__ = [
    "ALPHABET",
    "NUM_LEVELS",
    "ECGByteTokenizer",
    "NormParams",
    "SymbolConfig",
    "import_pickle",
    "read_legacy_pickle",
    "train_tokenizer",
]

"""Signal2Vec: an encoder over ECG-Byte tokens with its own pretraining, in one package.

- ``encoder.py``: the ``signal2vec`` encoder (ENCODERS), which loads the vectors;
- ``vectors.py``: the skip-gram options, the trained ``[V, dim]`` table and its files;
- ``pretrain.py``: corpus, skip-gram objective and training, registered as the ``signal2vec`` pretrainer
  (``ecg-bench pretrain signal2vec``).
"""

from ecg_bench.models.encoders.signal2vec.encoder import TOKENIZER_FILE, WEIGHTS_FILE, Signal2VecEncoder
from ecg_bench.models.encoders.signal2vec.pretrain import (
    Signal2VecPretrainConfig,
    corpus_from_store,
    keep_probability,
    pretrain_from_store,
    skipgram_pairs,
    train_signal2vec,
)
from ecg_bench.models.encoders.signal2vec.vectors import Signal2Vec, Signal2VecConfig, vocab_fingerprint

__all__ = ["TOKENIZER_FILE", "WEIGHTS_FILE", "Signal2Vec", "Signal2VecConfig", "Signal2VecEncoder", "Signal2VecPretrainConfig",
           "corpus_from_store", "keep_probability", "pretrain_from_store", "skipgram_pairs", "train_signal2vec",
           "vocab_fingerprint"]  # fmt: skip

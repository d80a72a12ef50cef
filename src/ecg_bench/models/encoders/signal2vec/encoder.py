"""Signal2Vec encoder: signal -> ECG-Byte tokens -> Signal2Vec vectors -> ``num_tokens`` pooled vectors.

``[N, leads, L]`` (the ``signal`` representation) is symbolized and BPE-encoded with the ECG-Byte
tokenizer ``spec.tokenizer`` (no gradient: tokenization is discrete), each token looked up in the
Signal2Vec table ``spec.weights`` (``[V, dim]``, trained by ``ecg-bench pretrain signal2vec``: ``pretrain.py``),
and the vectors are averaged into ``spec.num_tokens`` chunks by position in the flattened symbol
string: a token belongs to chunk ``floor(K * centre / (leads * L))`` where ``centre`` is the middle
of its symbols. Leads are flattened one after the other, so with ``num_tokens = 12`` each output
vector summarises one lead. A chunk with no token is zeros.

Output ``[N, num_tokens, dim]``; ``out_dim`` is the Signal2Vec width (``spec.out_dim`` is not used).
The table is a parameter: fine-tuned unless ``model.encoder.freeze`` and then saved in the
checkpoint's ``encoder.safetensors``; frozen otherwise. Segment amplitude is not seen (ECG-Byte
normalizes every segment to its own min-max range).

A checkpoint carries what the encoder is built from: ``ecg_byte_tokenizer.json`` and
``signal2vec.safetensors`` (+ ``.json``), which ``ecg-bench evaluate --checkpoint`` uses.
"""

from __future__ import annotations

from dataclasses import dataclass

import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ecg_bench.errors import ConfigError, DataError, ShapeError
from ecg_bench.config import EncoderOptions, path_field
from ecg_bench.models.encoders.base import ENCODERS, EncoderSpec
from ecg_bench.models.encoders.signal2vec.vectors import Signal2Vec, vocab_fingerprint

TOKENIZER_FILE = "ecg_byte_tokenizer.json"
WEIGHTS_FILE = "signal2vec.safetensors"


class Signal2VecEncoder(nn.Module):
    """See the module docstring."""

    def __init__(self, spec: EncoderSpec):
        super().__init__()
        from ecg_bench.representations.ecg_byte import ECGByteRepresentation

        if not spec.tokenizer or not spec.weights:
            raise ConfigError(["encoder signal2vec needs model.encoder.tokenizer (ECG-Byte JSON) and model.encoder.weights (.safetensors)"])
        self.rep = ECGByteRepresentation(tokenizer=spec.tokenizer)
        s2v = Signal2Vec.load(spec.weights)
        strings = self.rep.tokenizer.token_strings()
        saved = s2v.meta.get("tokenizer_fingerprint")
        if s2v.vocab_size != len(strings) or (saved and saved != vocab_fingerprint(strings)):
            raise DataError(f"{spec.weights}: Signal2Vec vectors ({s2v.vocab_size} tokens) were not trained with the "
                            f"ECG-Byte tokenizer {spec.tokenizer} ({len(strings)} tokens)")  # fmt: skip
        self.in_leads, self.seq_len, self.num_tokens, self.out_dim = spec.in_leads, spec.seq_len, spec.num_tokens, s2v.dim
        self.embed = nn.Embedding.from_pretrained(s2v.input.float(), freeze=False)
        self.token_len = np.array([len(s) for s in strings], dtype=np.int64)
        self.weights_path = Path(spec.weights)

    def save_extra(self, folder: Path) -> None:
        """Write the ECG-Byte tokenizer and the pretrained vectors into a checkpoint folder (``TOKENIZER_FILE``,
        ``WEIGHTS_FILE`` + its JSON), so ``ecg-bench evaluate --checkpoint`` does not depend on the original paths."""
        self.rep.tokenizer.save(Path(folder) / TOKENIZER_FILE)
        shutil.copyfile(self.weights_path, Path(folder) / WEIGHTS_FILE)
        shutil.copyfile(self.weights_path.with_suffix(".json"), (Path(folder) / WEIGHTS_FILE).with_suffix(".json"))

    def chunk_index(self, ids: np.ndarray) -> np.ndarray:
        """Chunk of each token of one segment, by the middle of its symbols in the flattened string."""
        lens = self.token_len[ids]
        centre = np.cumsum(lens) - lens / 2.0
        return np.minimum((centre * self.num_tokens / (self.in_leads * self.seq_len)).astype(np.int64), self.num_tokens - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 3 or x.shape[1:] != (self.in_leads, self.seq_len):
            raise ShapeError("signal2vec encoder input", x.shape, f"[N, {self.in_leads}, {self.seq_len}]")
        seqs = self.rep.encode_many(x.detach().float().cpu().numpy())
        ids = np.concatenate(seqs).astype(np.int64)
        slot = np.concatenate([i * self.num_tokens + self.chunk_index(s.astype(np.int64)) for i, s in enumerate(seqs)])
        dev = self.embed.weight.device
        vecs = self.embed(torch.from_numpy(ids).to(dev))
        slot_t = torch.from_numpy(slot).to(dev)
        n = x.shape[0] * self.num_tokens
        sums = torch.zeros(n, self.out_dim, device=dev, dtype=vecs.dtype).index_add_(0, slot_t, vecs)
        counts = torch.bincount(slot_t, minlength=n).clamp_min(1).unsqueeze(-1).to(vecs.dtype)
        return (sums / counts).view(x.shape[0], self.num_tokens, self.out_dim)


@dataclass
class Signal2VecOptions(EncoderOptions):
    """ECG-Byte tokens looked up in Signal2Vec vectors (``ecg-bench pretrain signal2vec``), averaged into tokens."""

    tokenizer: str = path_field(checkpoint=TOKENIZER_FILE)
    """ECG-Byte tokenizer JSON the vectors were trained with."""
    weights: str = path_field(checkpoint=WEIGHTS_FILE)
    """Signal2Vec vectors (.safetensors written by ``ecg-bench pretrain signal2vec``)."""
    num_tokens: int = 4
    """Output tokens per ECG."""

    def problems(self) -> list[str]:
        p = [] if (self.tokenizer and self.weights) else ["needs tokenizer (ECG-Byte JSON) and weights (Signal2Vec .safetensors)"]
        return p + ([f"num_tokens must be >= 1, got {self.num_tokens}"] if self.num_tokens < 1 else [])


@ENCODERS.register("signal2vec", options=Signal2VecOptions)
def signal2vec(opts: Signal2VecOptions, spec: EncoderSpec) -> nn.Module:
    return Signal2VecEncoder(spec)

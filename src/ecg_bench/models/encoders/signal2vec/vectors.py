"""Signal2Vec vectors: the skip-gram options, the trained ``[V, dim]`` table and its files.

Files: ``<name>.safetensors`` holds ``input`` (the word vectors, ``[V, dim]``) and ``output``
(the context vectors); ``<name>.json`` beside it the config, vocabulary size, the ECG-Byte
tokenizer's token strings' fingerprint and the loss per epoch. Nothing is pickled.
Written by ``ecg-bench pretrain signal2vec`` (``pretrain.py``), read by the encoder (``encoder.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ecg_bench.errors import DataError, require_file
from ecg_bench.safe_files import load_safetensors, read_json_file

FORMAT = "signal2vec"
FORMAT_VERSION = 1


@dataclass
class Signal2VecConfig:
    """Skip-gram with negative sampling over ECG-Byte tokens."""

    dim: int = 64
    """Width of the token vectors."""
    window: int = 5
    """Largest distance (in tokens) between a centre token and a context token."""
    negatives: int = 5
    """Noise tokens per (centre, context) pair, drawn from unigram^0.75."""
    subsample: float = 1e-3
    """Subsampling threshold t of frequent tokens (0 = keep every token)."""
    epochs: int = 3
    """Passes over the corpus."""
    batch_size: int = 4096
    """(centre, context) pairs per optimizer step."""
    lr: float = 0.01
    """Peak Adam learning rate (decays linearly to 10 %)."""
    seed: int = 0
    """Seed of initialisation, subsampling, windows, pair order and noise."""

    def problems(self) -> list[str]:
        p = [f"signal2vec.{k} must be >= 1, got {getattr(self, k)}" for k in ("dim", "window", "epochs", "batch_size")
             if getattr(self, k) < 1]  # fmt: skip
        if self.negatives < 0 or self.subsample < 0 or self.lr <= 0:
            p.append(
                f"signal2vec: negatives, subsample must be >= 0 and lr > 0, got {self.negatives}, {self.subsample}, {self.lr}"
            )
        return p


@dataclass
class Signal2Vec:
    """Trained vectors: ``input`` ``[V, dim]`` are the token embeddings, ``output`` the context vectors."""

    input: torch.Tensor
    output: torch.Tensor
    config: Signal2VecConfig = field(default_factory=Signal2VecConfig)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        return int(self.input.shape[0])

    @property
    def dim(self) -> int:
        return int(self.input.shape[1])

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.safetensors) and the JSON description beside it."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({"input": self.input.contiguous(), "output": self.output.contiguous()}, str(path))
        doc = {"format": FORMAT, "format_version": FORMAT_VERSION, "vocab_size": self.vocab_size, "dim": self.dim,
               "config": dataclasses.asdict(self.config), "meta": self.meta}  # fmt: skip
        path.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Signal2Vec":
        """Read a file written by ``save`` (the JSON beside it is required and checked)."""
        path = require_file(path, "Signal2Vec weights")
        doc_file = require_file(Path(path).with_suffix(".json"), "Signal2Vec description")
        doc = read_json_file(doc_file, "Signal2Vec description (JSON object)")
        if not isinstance(doc, dict):
            raise DataError(f"{doc_file}: expected a JSON object, got {type(doc).__name__}")
        if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{doc_file}: expected format {FORMAT!r} version {FORMAT_VERSION}, got {doc.get('format')!r} "
                            f"version {doc.get('format_version')!r}")  # fmt: skip
        tensors = load_safetensors(path)
        if set(tensors) != {"input", "output"} or tensors["input"].shape != (doc["vocab_size"], doc["dim"]):
            raise DataError(f"{path}: expected tensors input/output of shape [{doc['vocab_size']}, {doc['dim']}]")
        return cls(tensors["input"], tensors["output"], Signal2VecConfig(**doc["config"]), doc.get("meta", {}))


def vocab_fingerprint(token_strings: Sequence[str]) -> str:
    """Short hash of an ECG-Byte vocabulary, to check that vectors and tokenizer belong together."""
    return hashlib.sha256("\n".join(token_strings).encode()).hexdigest()[:16]

"""Machine translation of report texts (PTB-XL's German reports to English) with a JSON cache.

The model is whatever the user names: a local folder or a Hugging Face hub id of a seq2seq model
(e.g. ``Helsinki-NLP/opus-mt-de-en``), run through ``transformers``. Translations are cached in a JSON
file keyed by the source text, so a text is translated once however often it occurs and however many
times the dataset is read. When no model is named, or it cannot be loaded (offline, missing files),
translation is skipped with one logged note and callers fall back to their model-free text.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ecg_bench.limits import load_json_file
from ecg_bench.logging_utils import get_logger, progress

log = get_logger(__name__)


def default_cache_path(model: str) -> Path:
    """``$XDG_CACHE_HOME/ecg_bench/translations-<model>.json`` (``~/.cache`` when unset)."""
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ecg_bench"
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", model.strip("/")).strip("_") or "model"
    return root / f"translations-{slug}.json"


def load_cache(path: str | Path) -> dict[str, str]:
    """The cache as ``{source text: translation}`` (empty if the file does not exist)."""
    p = Path(path)
    if not p.is_file():
        return {}
    data = load_json_file(p, "translation cache (JSON object)")
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"translation cache {p}: expected a JSON object of text -> translation strings")
    return data


def _save_cache(path: Path, cache: dict[str, str]) -> None:
    # Written to a temporary file and renamed, so an interrupted run never leaves a half-written cache.
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(cache, ensure_ascii=False, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _load_model(model: str, device: str):
    """(tokenizer, model) or None with a logged note when the model cannot be loaded."""
    try:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        from ecg_bench.safe_files import safetensors_only

        mt = AutoModelForSeq2SeqLM.from_pretrained(model, **safetensors_only(model, "translation model")).to(device).eval()
    except Exception as e:  # offline hub id, missing folder, sentencepiece missing, ...
        log.warning("translation model %r could not be loaded (%s: %s); reports are not translated", model, type(e).__name__, e)
        return None
    return tokenizer, mt


class Translator:
    """Batched translation through a seq2seq model, cached in a JSON file keyed by the source text."""

    def __init__(
        self,
        model: str,
        cache_path: str | Path | None = None,
        batch_size: int = 32,
        max_new_tokens: int = 256,
        device: str = "cpu",
    ) -> None:
        self.model = model
        self.cache_path = Path(cache_path) if cache_path else default_cache_path(model)
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.device = device
        self.cache = load_cache(self.cache_path)

    def _generate(self, tokenizer, mt, texts: list[str]) -> list[str]:
        import torch

        enc = tokenizer(texts, return_tensors="pt", padding=True, truncation=True).to(self.device)
        # A translation is rarely more than twice its source's length: the cap stops a degenerate
        # (repeating) output early instead of running to max_new_tokens.
        limit = min(self.max_new_tokens, 2 * int(enc["input_ids"].shape[1]) + 16)
        with torch.no_grad():
            out = mt.generate(**enc, max_new_tokens=limit, num_beams=1, do_sample=False)
        return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]

    def translate(self, texts: Iterable[str]) -> dict[str, str] | None:
        """``{text: translation}`` for every non-blank text, or None if the model cannot be loaded.

        Texts already in the cache are not translated again; new translations are added to the cache
        file after every batch (an interrupted run keeps what it finished).
        """
        wanted = sorted({t for t in texts if isinstance(t, str) and t.strip()})
        todo = [t for t in wanted if t not in self.cache]
        if todo:
            loaded = _load_model(self.model, self.device)
            if loaded is None:
                return None
            tokenizer, mt = loaded
            log.info("translating %d texts with %s (cache %s)", len(todo), self.model, self.cache_path)
            for i in progress(range(0, len(todo), self.batch_size), desc="translating reports", unit="batch"):
                batch = todo[i : i + self.batch_size]
                self.cache.update(zip(batch, self._generate(tokenizer, mt, batch), strict=True))
                _save_cache(self.cache_path, self.cache)
        return {t: self.cache[t] for t in wanted}


def translate_texts(
    texts: Iterable[str], model: str, cache_path: str | Path | None = None, batch_size: int = 32, device: str = "cpu"
) -> dict[str, str] | None:
    """Translate ``texts`` with ``model`` (cached); None when ``model`` is empty or cannot be loaded."""
    if not model:
        log.info("no translation model configured; reports are kept in their original language")
        return None
    return Translator(model, cache_path, batch_size=batch_size, device=device).translate(texts)

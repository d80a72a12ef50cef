"""Tests read each GGUF file once per process (tests/conftest.py; dist_workers.py in the processes it spawns)."""

from __future__ import annotations

from pathlib import Path


def reuse_gguf_loads() -> None:
    """Read each GGUF file once per test process: transformers converts and de-quantizes it on every
    ``from_pretrained(..., gguf_file=...)`` (SmolLM2's tokenizer ~4 CPU-s, which every ``tiny``/``mini`` LLM loads;
    the 135M model ~20 CPU-s). Later loads of the same unchanged file get a deep copy of the first result, so
    a test that changes its tokenizer or model (added tokens, LoRA) changes only its own copy. Loads that
    fail (truncated or garbage files) are not cached and fail as before."""
    import copy

    from transformers import AutoModelForCausalLM, AutoTokenizer

    def memo(cls) -> None:
        if getattr(cls, "_tests_reuse_gguf", False):
            return
        cls._tests_reuse_gguf = True
        real = cls.from_pretrained.__func__
        cache: dict = {}

        def from_pretrained(klass, src, *args, **kw):
            gguf = kw.get("gguf_file")
            if not gguf or args:
                return real(klass, src, *args, **kw)
            f = Path(src) / gguf
            st = f.stat() if f.is_file() else None
            if st is None:
                return real(klass, src, *args, **kw)
            key = (klass, str(f.resolve()), st.st_size, st.st_mtime_ns, tuple(sorted((k, repr(v)) for k, v in kw.items())))
            if key not in cache:
                cache[key] = real(klass, src, *args, **kw)
            return copy.deepcopy(cache[key])

        cls.from_pretrained = classmethod(from_pretrained)

    memo(AutoTokenizer)
    memo(AutoModelForCausalLM)

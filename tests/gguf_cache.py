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
        if cls.__dict__.get("_tests_reuse_gguf"):
            return
        cls._tests_reuse_gguf = True
        real = cls.from_pretrained.__func__
        cache: dict = {}

        def from_pretrained(klass, *args, **kw):
            gguf = kw.get("gguf_file")
            f = Path(args[0]) / gguf if gguf and len(args) == 1 else None
            st = f.stat() if f is not None and f.is_file() else None
            if st is None:  # not one GGUF file given as (folder, gguf_file=name): transformers as it is
                return real(klass, *args, **kw)
            key = (klass, str(f.resolve()), st.st_size, st.st_mtime_ns, tuple(sorted((k, repr(v)) for k, v in kw.items())))
            if key not in cache:
                cache[key] = real(klass, *args, **kw)
            return copy.deepcopy(cache[key])

        cls.from_pretrained = classmethod(from_pretrained)

    memo(AutoTokenizer)
    memo(AutoModelForCausalLM)

"""ECG-Bench: build, train and benchmark ECG-language models (ELMs)."""

from ecg_bench._version import __version__

_INFERENCE = ("from_pretrained", "load_elm", "push_to_hub", "ECGLanguageModel")
"""Exported from ``ecg_bench.inference`` on first use (importing the package stays light: no torch)."""


def __getattr__(name: str):
    if name in _INFERENCE:
        from ecg_bench import inference

        return getattr(inference, name)
    raise AttributeError(f"module 'ecg_bench' has no attribute {name!r}")


__all__ = ["__version__", *_INFERENCE]

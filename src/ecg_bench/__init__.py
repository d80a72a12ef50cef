"""ECG-Bench: build, train and benchmark ECG-language models (ELMs)."""

__version__ = "0.1.0"

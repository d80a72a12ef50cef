"""LLM loading, chat formatting, ECG encoders, fusion and ELMs."""

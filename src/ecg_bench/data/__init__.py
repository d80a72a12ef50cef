"""Data: sources (raw datasets -> ECGRecord), segment store, mapped conversation datasets, folds."""

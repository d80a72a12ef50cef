"""Base ECG dataset readers, one module each. Each yields ECGRecord; registered by name in SOURCES (``base.py``)."""

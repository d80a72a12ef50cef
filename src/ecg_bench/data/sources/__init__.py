"""Base ECG dataset readers. Each yields ECGRecord; registered by name in SOURCES."""

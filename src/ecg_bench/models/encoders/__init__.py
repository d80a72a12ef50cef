"""ECG encoders. Registered by name in ENCODERS."""

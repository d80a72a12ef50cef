"""Segment -> model input. Registered by name in REPRESENTATIONS."""

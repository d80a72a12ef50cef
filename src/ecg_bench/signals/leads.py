"""The canonical 12-lead order every preprocessed signal follows (rows of ``[12, samples]``)."""

from __future__ import annotations

LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
"""Canonical 12-lead order used everywhere after preprocessing."""

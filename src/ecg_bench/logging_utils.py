"""Logging set-up shared by the CLI and scripts."""

from __future__ import annotations

import logging
import os

LOGGER_NAME = "ecg_bench"


def get_logger(name: str) -> logging.Logger:
    """Logger under the package namespace (``ecg_bench.<module>``)."""
    return logging.getLogger(name if name.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{name}")


def setup_logging(level: str | int | None = None) -> None:
    """Configure the package logger once: ``LEVEL time name: message`` on stderr."""
    level = level or os.environ.get("ECG_BENCH_LOG_LEVEL", "INFO")
    root = logging.getLogger(LOGGER_NAME)
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(asctime)s %(name)s: %(message)s", "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else str(level).upper())
    root.propagate = False  # libraries that configure the root logger would print every line twice

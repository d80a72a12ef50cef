"""Logging set-up shared by the CLI and scripts, a run's log file, and progress that stays readable in a file."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

LOGGER_NAME = "ecg_bench"
LOG_FORMAT = "%(levelname)s %(asctime)s %(name)s: %(message)s"
PROGRESS_SECONDS = float(os.environ.get("ECG_BENCH_PROGRESS_SECONDS", "30"))
"""Seconds between two progress log lines when stderr is not a terminal."""


def get_logger(name: str) -> logging.Logger:
    """Logger under the package namespace (``ecg_bench.<module>``)."""
    return logging.getLogger(name if name.startswith(LOGGER_NAME) else f"{LOGGER_NAME}.{name}")


class _StderrHandler(logging.StreamHandler):
    """A handler writing to whatever ``sys.stderr`` is when a record is emitted, not the stream it was made with (a
    caller or a test that swaps ``sys.stderr`` still gets the lines, and a closed old stream is never written)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property always reads sys.stderr
        pass


def setup_logging(level: str | int | None = None) -> None:
    """Configure the package logger once: ``LEVEL time name: message`` on stderr."""
    level = level or os.environ.get("ECG_BENCH_LOG_LEVEL", "INFO")
    root = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_ecg_bench_stderr", False) for h in root.handlers):
        handler = _StderrHandler()
        handler._ecg_bench_stderr = True  # type: ignore[attr-defined]  # a run's file handler is not this one
        handler.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level if isinstance(level, int) else str(level).upper())
    root.propagate = False  # libraries that configure the root logger would print every line twice
    if not _is_terminal(sys.stderr):  # libraries' own tqdm bars (transformers, datasets, the hub) would fill a
        os.environ.setdefault("TQDM_DISABLE", "1")  # log file with carriage returns; ours go through ``progress``
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


@contextlib.contextmanager
def log_to_file(path: str | Path, level: int = logging.INFO) -> Iterator[Path]:
    """Also write the package's log records to ``path`` (appended: a resumed run continues its run.log) while
    the block runs. The package logger is lowered to ``level`` meanwhile if it was above it (a run started
    from Python without ``setup_logging`` still gets its INFO lines in the file), and restored after."""
    path = Path(path)
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT, "%Y-%m-%d %H:%M:%S"))
    handler.setLevel(level)
    old_level = logger.level
    if logger.getEffectiveLevel() > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield path
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(old_level)


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class LogProgress:
    """Progress as periodic log lines (``desc: 120/1500 (8 %), 3.2 it/s, loss=0.41``), for output redirected
    to a file. The tqdm surface the package uses: iteration, ``update``, ``set_postfix``, ``close``."""

    def __init__(self, iterable: Iterable | None = None, desc: str = "", total: int | None = None, initial: int = 0,
                 unit: str = "it", every: float | None = None, logger: logging.Logger | None = None) -> None:  # fmt: skip
        self.iterable, self.desc, self.unit, self.n, self.start = iterable, desc or "progress", unit, initial, initial
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = total
        self.every = PROGRESS_SECONDS if every is None else every
        self.log = logger or get_logger("progress")
        self.t0 = self.last = time.monotonic()
        self.postfix = ""
        self.logged = 0

    def __iter__(self) -> Iterator[Any]:
        for x in self.iterable or ():
            yield x
            self.update(1)
        self.close()

    def __len__(self) -> int:
        return int(self.total or 0)

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **kw: Any) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str = "", refresh: bool = True) -> None:
        self.desc = desc or self.desc

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._line(now)

    def _line(self, now: float) -> None:
        rate = (self.n - self.start) / max(now - self.t0, 1e-9)
        of = f"/{self.total} ({100 * self.n / self.total:.0f} %)" if self.total else ""
        tail = f", {self.postfix}" if self.postfix else ""
        self.log.info("%s: %d%s, %.3g %s/s%s", self.desc, self.n, of, rate, self.unit, tail)
        self.logged += 1

    def close(self) -> None:
        if self.logged:  # a short loop stays silent; a long one ends with its final count
            self.logged = 0
            self._line(time.monotonic())
            self.logged = 0

    def refresh(self) -> None:
        pass


def progress(iterable: Iterable | None = None, desc: str = "", total: int | None = None, initial: int = 0,
             unit: str = "it", leave: bool = True, disable: bool = False, **tqdm_kw: Any) -> Any:  # fmt: skip
    """A tqdm bar when stderr is a terminal; otherwise ``LogProgress``: a log line every ``PROGRESS_SECONDS``.

    tqdm redraws its bar with carriage returns, so a log file collects thousands of partial lines; tqdm's own
    ``disable=None`` (off when not a TTY) would show nothing at all. Hence this small switch over tqdm rather
    than tqdm alone.
    """
    if disable:
        return LogProgress(iterable, desc, total, initial, unit, every=float("inf"))
    if _is_terminal(sys.stderr):
        from tqdm.auto import tqdm

        return tqdm(iterable, desc=desc, total=total, initial=initial, unit=unit, leave=leave, **tqdm_kw)
    return LogProgress(iterable, desc, total, initial, unit)

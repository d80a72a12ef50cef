"""Exceptions raised by ECG-Bench. Each names the bad value and what was expected."""

from __future__ import annotations


class ECGBenchError(Exception):
    """Base class of every error ECG-Bench raises on purpose."""


class UnknownNameError(ECGBenchError, KeyError):
    """A name that is not in a registry; the message lists the valid names."""

    def __init__(self, kind: str, name: str, valid: list[str]):
        self.kind, self.name, self.valid = kind, name, valid
        super().__init__(f"unknown {kind} {name!r}; valid {kind} names: {', '.join(valid) or '(none registered)'}")

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


class ConfigError(ECGBenchError, ValueError):
    """One or more invalid configuration values; every problem is listed."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid configuration:\n  - " + "\n  - ".join(problems))


class DataError(ECGBenchError, ValueError):
    """Bad input data: a missing or corrupt file, a wrong shape, a missing field."""


class CheckpointError(DataError):
    """A checkpoint folder that is incomplete, damaged, unfinished (a ``.tmp-`` folder) or could not be written."""


class ShapeError(DataError):
    """An array whose shape is not the expected one."""

    def __init__(self, what: str, got: tuple, expected: str):
        super().__init__(f"{what}: expected shape {expected}, got {tuple(got)}")


def require_file(path, what: str = "file"):
    """Return ``path`` as a Path, raising FileNotFoundError that names it if it does not exist."""
    from pathlib import Path

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {p}")
    return p

"""Strict value checks: every config value against its declared type, then each section's range checks."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from ecg_bench.config.fields import _hints, _is_config, _list_of_config
from ecg_bench.config.options import Options
from ecg_bench.errors import ConfigError

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
MIN_SEGMENT_SAMPLES = 16
"""Fewest samples a segment may have (data.segment_seconds x data.target_fs)."""


def _show(value: Any) -> str:
    """A bad value as a message shows it: short, with its type when it is not a string."""
    text = repr(value)
    text = text if len(text) <= 60 else text[:57] + "..."
    return text if isinstance(value, str) else f"{text} ({type(value).__name__})"


def coerce(value: Any, hint: Any, where: str) -> Any:
    """``value`` converted to the declared scalar type ``hint``, or ConfigError naming ``where``.

    The strict gate every config value passes before draccus decodes the whole (draccus itself would take
    None for an int, True for an int, NaN for a float):

    - int: an int or an integral number or string ("5", "1e3", 5.0); not 2.5, "ten" or a bool.
    - float: an int, a float or a numeric string ("1e-3"); never NaN or infinite, nor a bool.
    - bool: a bool or true/false, yes/no, on/off, 1/0 as a string (any case); not 1 or "maybe".
    - str: a string (an int is taken as its digits, e.g. a folder named 2024); not a bool, float, list or null.
    - list[T] / tuple[T, ...]: a list whose every element is coerced to T (a lone string is not a list).
    - T | None: None or a T.
    """
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"{where}: unsupported config type {hint}")
        return coerce(value, inner[0], where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError([f"{where}: expected a list, got {_show(value)}"])
        problems, out = [], []
        for i, v in enumerate(value):
            try:
                out.append(coerce(v, args[0] if args else Any, f"{where}[{i}]"))
            except ConfigError as e:
                problems += e.problems
        if problems:
            raise ConfigError(problems)
        return out if origin is list else tuple(out)
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError([f"{where}: expected true or false, got {_show(value)}"])
    if hint is int:
        n = _number(value)
        if n is None or isinstance(value, bool):
            raise ConfigError([f"{where}: expected an integer, got {_show(value)}"])
        if isinstance(n, float) and not (math.isfinite(n) and n.is_integer()):
            raise ConfigError([f"{where}: expected an integer, got {_show(value)}"])
        return int(n)
    if hint is float:
        n = _number(value)
        if n is None or isinstance(value, bool):
            raise ConfigError([f"{where}: expected a number, got {_show(value)}"])
        if not math.isfinite(n):
            raise ConfigError([f"{where}: expected a finite number, got {_show(value)}"])
        return float(n)
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        quote = " (quote it in YAML)" if value is not None else ""
        raise ConfigError([f"{where}: expected a string, got {_show(value)}{quote}"])
    raise TypeError(f"{where}: unsupported config type {hint}")


def _number(value: Any) -> int | float | None:
    """An int or float from a number or a numeric string, else None (bools are left to the caller)."""
    if isinstance(value, (int, float)):
        return value
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return None


def check_types(obj: Any, prefix: str, recurse: bool = True) -> list[str]:
    """Coerce every field of config ``obj`` (nested sections, chosen options, lists of options) in place to its
    declared type; the problems of those that cannot be."""
    problems = []
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value, hint = getattr(obj, f.name), hints[f.name]
        if _is_config(hint):
            if not isinstance(value, hint):
                problems.append(f"{prefix}{f.name}: expected {hint.__name__} options, got {_show(value)}")
            elif recurse:
                problems += check_types(value, f"{prefix}{f.name}.")
            continue
        inner = _list_of_config(hint)
        if inner is not None:
            if not isinstance(value, list) or not all(isinstance(v, inner) for v in value):
                problems.append(f"{prefix}{f.name}: expected a list of {inner.__name__}, got {_show(value)}")
            elif recurse:
                for i, v in enumerate(value):
                    problems += check_types(v, f"{prefix}{f.name}[{i}].")
            continue
        try:
            setattr(obj, f.name, coerce(value, hint, f"{prefix}{f.name}"))
        except ConfigError as e:
            problems += e.problems
    return problems


def tree_problems(obj: Any, prefix: str) -> list[str]:
    """Range checks of a config tree: each section's ``problems()`` (messages carry their own path) and each chosen
    component's ``problems()`` (prefixed here with its path and type)."""
    p: list[str] = []
    if isinstance(obj, Options):
        p += [f"{prefix.rstrip('.')} ({obj.type}): {m}" for m in obj.problems()]
    elif hasattr(obj, "problems"):
        p += obj.problems()
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            p += tree_problems(value, f"{prefix}{f.name}.")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                if dataclasses.is_dataclass(v):
                    p += tree_problems(v, f"{prefix}{f.name}[{i}].")
    return p


def segment_problems(seconds: float, fs: float) -> list[str]:
    """A segment of ``seconds`` at ``fs`` Hz must be a whole number of samples, and at least MIN_SEGMENT_SAMPLES."""
    n = seconds * fs
    what = f"data.segment_seconds {seconds:.10g} s at data.target_fs {fs:g} Hz is {n:.10g} samples"
    if n < MIN_SEGMENT_SAMPLES - 1e-6:
        return [f"{what}; at least {MIN_SEGMENT_SAMPLES} are needed (data.segment_seconds >= {MIN_SEGMENT_SAMPLES / fs:.10g})"]
    if abs(n - round(n)) > 1e-6:
        near = " or ".join(f"{c / fs:.10g}" for c in sorted({max(math.floor(n), MIN_SEGMENT_SAMPLES), math.ceil(n)}))
        return [f"{what}, not a whole number (the store would silently round it); nearest valid: {near}"]
    return []



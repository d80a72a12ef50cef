"""Reading, layering and decoding a config: a command's preset < a ``--config`` file < flags.

A higher layer that changes a choice's ``type`` replaces that choice's options; unknown keys are refused with
the valid ones listed; draccus decodes; then the strict type checks and every section's and option's
``problems()``: one ConfigError lists every problem.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import draccus

from ecg_bench.config.coerce import _show, check_types, coerce, tree_problems
from ecg_bench.config.fields import _hints, _is_config, _list_of_config
from ecg_bench.config.options import Options, is_choice, to_dict
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.limits import load_config_file


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a .json or .yaml config file (``limits.load_config_file``: size, YAML aliases, nesting and
    values bounded); FileNotFoundError or ConfigError naming the file."""
    path = Path(path)
    try:
        d = load_config_file(path, "run config")
    except DataError as e:
        raise ConfigError([str(e)]) from None
    d = {} if d is None else d
    if not isinstance(d, dict):
        raise ConfigError([f"{path}: expected a mapping of config sections, got {type(d).__name__}"])
    return d




def _shorthand(raw: Any, cls: type, where: str, prefix: str = "") -> Any:
    """``raw`` with each choice given by name alone (``encoder: st_mem``, ``conditions: [real, zeros]``) written out
    as ``{type: NAME}`` (recursively, following ``cls``'s declared types)."""
    if not isinstance(raw, Mapping):
        return raw
    raw = dict(raw)
    hints = _hints(cls) if dataclasses.is_dataclass(cls) else {}
    for k, v in list(raw.items()):
        hint = hints.get(k)
        if hint is None:
            continue
        if is_choice(hint):
            raw[k] = {"type": v} if isinstance(v, str) else v
        elif _list_of_config(hint) is not None and isinstance(v, list):
            raw[k] = [{"type": x} if isinstance(x, str) else x for x in v]
        elif _is_config(hint):
            raw[k] = _shorthand(v, hint, where, f"{prefix}{k}.")
    return raw


def merge(low: Any, high: Any) -> Any:
    """``high`` layered over ``low``: mappings merge key by key, except that a choice whose ``type`` changes is replaced
    whole (the old component's options do not carry over); anything else (lists too) is replaced."""
    if isinstance(low, Mapping) and isinstance(high, Mapping):
        if "type" in high and low.get("type") != high["type"]:
            return copy.deepcopy(dict(high))
        out = dict(low)
        for k, v in high.items():
            out[k] = merge(low[k], v) if k in low else copy.deepcopy(v)
        return out
    return copy.deepcopy(high)


def _choice_class(base: type, raw: Any) -> type | None:
    name = raw.get("type") if isinstance(raw, Mapping) else None
    return base.get_known_choices().get(name) if isinstance(name, str) else None


def _loc(where: str, path: str) -> str:
    """Where a value came from, as messages show it: ``--train.lr`` for a flag, ``FILE: train.lr`` for a file."""
    if where == "flags":
        return f"--{path}"
    return f"{where}: {path}" if where else path


def _check_raw(raw: Any, cls: type, where: str, prefix: str, context: Any = None) -> tuple[Any, list[str]]:
    """Unknown keys (with the valid ones listed), unknown choice names and values of the wrong type in the raw
    mapping for dataclass ``cls``; returns the mapping with every value coerced to its declared type. ``context``
    is the same part of the whole layered config (it tells which component a partial layer's options belong to)."""
    path = prefix.rstrip(".") or "the run config"
    context = context if isinstance(context, Mapping) else {}
    if not isinstance(raw, Mapping):
        return raw, [f"{_loc(where, path)}: expected a mapping for {cls.__name__}, got {_show(raw)}"]
    problems: list[str] = []
    out: dict[str, Any] = {}
    is_opts = isinstance(cls, type) and issubclass(cls, Options)
    if is_opts:
        out["type"] = raw.get("type", context.get("type"))
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(str(k) for k in raw if k not in names and not (k == "type" and is_opts))
    if unknown:
        what = f"{path} ({out['type']})" if is_opts else path
        loc = f"{where}: " if where and where != "flags" else ""
        problems.append(f"{loc}unknown key(s) {unknown} for {what}; valid: {sorted(names)}")
    for k, v in raw.items():
        if k not in names:
            continue
        hint = hints[k]
        inner = _list_of_config(hint)
        if is_choice(hint) or (inner is not None and is_choice(inner)):
            base = hint if inner is None else inner
            if inner is not None and not isinstance(v, list):
                problems.append(f"{_loc(where, prefix + k)}: expected a list of {base.kind} names or {{type: NAME, ...}}, "
                                f"got {_show(v)}")  # fmt: skip
                continue
            items = [v] if inner is None else v
            ctx_items = [context.get(k)] if inner is None else [None] * len(items)
            decoded = []
            for i, (item, ctx) in enumerate(zip(items, ctx_items)):
                at = f"{prefix}{k}" + ("" if inner is None else f"[{i}]")
                typed = dict(item) if isinstance(item, Mapping) else item
                if isinstance(typed, dict) and "type" not in typed and isinstance(ctx, Mapping) and "type" in ctx:
                    typed["type"] = ctx["type"]
                sub = _choice_class(base, typed)
                if sub is None:
                    name = typed.get("type") if isinstance(typed, Mapping) else typed
                    valid = ", ".join(sorted(base.get_known_choices()))
                    problems.append(f"{_loc(where, at)}: unknown {base.kind} {name!r}; valid: {valid}")
                    continue
                d, p = _check_raw(typed, sub, where, f"{at}.", ctx)
                problems += p
                decoded.append(d)
            if inner is not None or decoded:
                out[k] = decoded if inner is not None else decoded[0]
        elif _is_config(hint):
            out[k], p = _check_raw(v, hint, where, f"{prefix}{k}.", context.get(k))
            problems += p
        else:
            try:
                out[k] = coerce(v, hint, _loc(where, prefix + k))
            except ConfigError as e:
                problems += e.problems
    return out, problems


def _decode(cls: type, raw: dict[str, Any], where: str) -> Any:
    try:
        return draccus.decode(cls, raw)
    except ConfigError:
        raise
    except Exception as e:  # draccus.utils.DecodingError / ParsingError, or a check in an options' __post_init__
        cause = e
        while cause.__cause__ is not None and not isinstance(cause, ConfigError):
            cause = cause.__cause__
        if isinstance(cause, ConfigError):
            raise ConfigError([f"{where}: {m}" for m in cause.problems]) from None
        raise ConfigError([f"{where}: {e}"]) from None


def layered(base: Any, layers: Iterable[tuple[str, Mapping[str, Any]]]) -> tuple[Any, list[str]]:
    """``base`` (a config instance) with each ``(where, mapping)`` layer over it, in order; (config or None, problems)."""
    cls = type(base)
    raw: Any = to_dict(base)
    problems: list[str] = []
    for where, layer in layers:
        layer = _shorthand(layer, cls, where)
        raw = merge(raw, layer)
        problems += _check_raw(layer, cls, where, "", raw)[1]  # each layer's problems, named by where they are
    checked, p = _check_raw(raw, cls, "", "", raw)  # a bad value is left out: its field keeps the default
    if issubclass(cls, Options):  # a component's options as the whole config (pretrain NAME): its type is its class
        checked.pop("type", None)
    if not problems:
        problems += p
    try:
        return _decode(cls, checked, "config"), problems
    except ConfigError as e:
        return None, problems + e.problems


def from_dict(cls: type, d: Mapping[str, Any], where: str = "config") -> Any:
    """Build a config from a mapping over ``cls``'s defaults; ConfigError lists every unknown key and bad value."""
    cfg, problems = layered(cls(), [(where, d)])
    if problems:
        raise ConfigError([p if p.startswith(where) else f"{where}: {p}" for p in problems])
    return cfg


def deflatten(overrides: Mapping[str, Any] | Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """``{"train.lr": x}`` -> ``{"train": {"lr": x}}``."""
    out: dict[str, Any] = {}
    items = overrides.items() if isinstance(overrides, Mapping) else overrides
    for dotted, value in items:
        node = out
        *parents, leaf = dotted.split(".")
        for p in parents:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = node[p] = {} if nxt is None else {"type": nxt} if isinstance(nxt, str) else nxt
            node = nxt
        if isinstance(node.get(leaf), dict) and isinstance(value, str):  # --model.encoder st_mem after .dim: a type
            node[leaf] = merge(node[leaf], {"type": value})
        else:
            node[leaf] = value
    return out


def build(
    base: Any,
    path: str | Path | None = None,
    overrides: Mapping[str, Any] | Iterable[tuple[str, Any]] = (),
    checks: Iterable[Callable[[Any], list[str]]] = (),
) -> Any:
    """Layer a config: ``base`` (a command's preset) < the file at ``path`` < ``overrides`` (dotted name -> value,
    e.g. from flags: ``{"train.lr": "1e-3", "model.encoder.type": "spectral"}``). Then the strict type checks, the
    range checks and ``checks`` (e.g. registry names). Every problem of every layer and section is raised together
    in one ConfigError; nothing else is done."""
    problems: list[str] = []
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if path:
        try:
            layers.append((str(path), read_config_file(path)))
        except FileNotFoundError as e:
            problems.append(str(e))
        except ConfigError as e:
            problems += e.problems
    flags = deflatten(overrides)
    if flags:
        layers.append(("flags", flags))
    cfg, p = layered(base, layers)  # with problems, cfg holds the defaults where values were bad
    problems += p
    if cfg is not None:
        if hasattr(cfg, "validate"):
            try:
                cfg.validate()
            except ConfigError as e:
                problems += e.problems
        else:
            problems += check_types(cfg, "") or [m for f in dataclasses.fields(cfg) if dataclasses.is_dataclass(getattr(cfg, f.name))
                                                  for m in tree_problems(getattr(cfg, f.name), f"{f.name}.")]
        for check in checks:  # registry-level checks need only well-typed values
            problems += check(cfg)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))
    return cfg


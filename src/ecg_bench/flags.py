"""Command-line flags of a config dataclass: every ``ecg-bench`` command parses its options this one way.

draccus's argument parser knows one flag per field (``--train.lr``; a choice's options as
``--model.encoder.hidden``, its type as ``--model.encoder.type``) and refuses unknown ones. This module asks
it for the flags given and leaves the values to ``config.build``, which layers them over the command's
preset and a ``--config`` file. It adds:

- ``--config FILE`` (a YAML or JSON run config);
- leading words for a command's positional fields (``ecg-bench sweep GRID``, ``report RUN...``);
- several words after a list flag (``--eval.conditions real zeros``) become one YAML list;
- a bool flag given alone (``--dry_run``) means true;
- a dashed spelling is refused naming the underscore one;
- a ``str`` field's value is taken as text, verbatim (``text_flags``); other values are read as YAML by the bounded
  loader (``yaml_value``), and every value must be valid UTF-8 (``check_utf8``);
- ``--help``: the sections and options of the components chosen (by the preset, ``--config`` and the flags),
  one or two lines each (``help_text``); ``ecg-bench list --details KIND`` is the catalogue of every component.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import sys
import textwrap
import typing
from collections.abc import Callable, Sequence
from typing import Any

from draccus.argparsing import ArgumentParser

from ecg_bench.config import (
    _hints,
    _is_config,
    _list_of_config,
    deflatten,
    field_docs,
    is_choice,
    layered,
    read_config_file,
    to_dict,
)
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.limits import parse_yaml


def list_flags(cls: type, prefix: str = "") -> set[str]:
    """Dotted names of the list-valued fields of ``cls`` (a choice's: those of any of its registered options)."""
    return {name for name, hint in _leaf_hints(cls, prefix) if typing.get_origin(hint) is list or _list_of_config(hint)}


def _leaf_hints(cls: type, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, type hint) of every option ``cls`` can take, a choice's as those of any registered component."""
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(cls):
        hint, name = _hints(cls)[f.name], f"{prefix}{f.name}"
        if is_choice(hint):
            for sub in hint.get_known_choices().values():
                out += _leaf_hints(sub, f"{name}.")
        elif _is_config(hint):
            out += _leaf_hints(hint, f"{name}.")
        else:
            out.append((name, hint))
    return out


def _join_lists(argv: list[str], lists: set[str]) -> list[str]:
    """``--x a b c`` -> ``--x ["a", "b", "c"]`` for list flags given several words, each word read as YAML (so
    ``{type: noise, snr_db: 5}`` is a mapping); one word is left as it is (YAML reads ``[a, b]`` or a lone name)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        out.append(a)
        i += 1
        if a.startswith("--") and "=" not in a and a[2:] in lists:
            words = []
            while i < len(argv) and not argv[i].startswith("--"):
                words.append(argv[i])
                i += 1
            values = [yaml_value(f"--{a[2:]}", w) for w in words]
            if len(values) == 1 and isinstance(values[0], list):  # already a YAML list: [a, b]
                out += words
            elif values:
                out.append(json.dumps(values))
    return out


def _bare_bools(argv: list[str], bools: set[str]) -> list[str]:
    """``--dry_run`` followed by nothing or another flag -> ``--dry_run true``."""
    out: list[str] = []
    for i, a in enumerate(argv):
        out.append(a)
        if a.startswith("--") and a[2:] in bools and (i + 1 == len(argv) or argv[i + 1].startswith("--")):
            out.append("true")
    return out


def _positionals(argv: list[str], cls: type, names: Sequence[str]) -> list[str]:
    """The leading words (before the first flag) as ``--NAME word``: one word per name, a list field takes the rest."""
    i, out = 0, []
    hints = _hints(cls)
    for name in names:
        if i >= len(argv) or argv[i].startswith("-"):
            break
        if typing.get_origin(hints[name]) is list:
            j = next((k for k in range(i, len(argv)) if argv[k].startswith("-")), len(argv))
            out += [f"--{name}", json.dumps(argv[i:j])]
            i = j
        else:
            out += [f"--{name}", argv[i]]
            i += 1
    return out + argv[i:]


def parse_flags(
    cls: type,
    argv: list[str],
    prog: str,
    description: str = "",
    preset: Callable[[], Any] | None = None,
    positional: Sequence[str] = (),
) -> tuple[str, dict[str, Any]]:
    """``(config file or "", {dotted name: value})`` from ``argv`` for config dataclass ``cls``; ``--help`` prints
    ``help_text`` (for the components ``preset``, the config file and the flags choose) and exits 0; an unknown flag
    exits 2 naming it (argparse's usage error)."""
    parser = ArgumentParser(cls, prog=prog, usage=_usage(prog, positional)).parser
    argv = _positionals(list(argv), cls, positional)
    leaves = _leaf_hints(cls)
    argv = _bare_bools(_join_lists(argv, list_flags(cls)), {n for n, h in leaves if h is bool})
    config, rest, want_help = "", [], False
    i = 0
    while i < len(argv):
        a = argv[i]
        key, eq, val = a[2:].partition("=") if a.startswith("--") else ("", "", "")
        if a in ("-h", "--help"):
            want_help, i = True, i + 1
            continue
        if key == "config":
            config = val if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if eq else 2
            continue
        if key and "-" in key and _known(parser, key) is None and _known(parser, key.replace("-", "_")) is not None:
            parser.error(f"unrecognized argument --{key}: flags are spelled with underscores, --{key.replace('-', '_')}")
        rest.append(a)
        i += 1
    for action in parser._actions:  # as draccus does: values stay strings, parsed as YAML below
        action.default = argparse.SUPPRESS
        action.type = str
        if action.choices:
            action.choices = [str(c) for c in action.choices]
    ns, unknown = parser.parse_known_args(rest)
    if unknown and not want_help:
        parser.error("unrecognized arguments: " + " ".join(unknown))
    text = text_flags(cls)
    values = {k: v for k, v in vars(ns).items() if k != "config_path"}
    for k, v in values.items():
        check_utf8(f"--{k}", v)
    flags = {k: v if k in text else yaml_value(f"--{k}", v) for k, v in values.items()}
    if want_help:
        print(help_text(_chosen(cls, preset, config, flags), prog, description, positional))
        sys.exit(0)
    return config, flags


def text_flags(cls: type, prefix: str = "") -> set[str]:
    """Dotted names of the ``str`` fields of ``cls`` (a choice's: those of any of its registered options): their flag
    values are free text taken verbatim, never decoded as YAML (a question "Rate: fast? # yes" stays that question)."""
    out: set[str] = set()
    for f in dataclasses.fields(cls):
        hint = _hints(cls)[f.name]
        name = f"{prefix}{f.name}"
        if hint is str:
            out.add(name)
        elif is_choice(hint):
            for sub in hint.get_known_choices().values():
                out |= text_flags(sub, f"{name}.")
        elif _is_config(hint):
            out |= text_flags(hint, f"{name}.")
    return out


def yaml_value(flag: str, text: str) -> Any:
    """A flag's value read as YAML (``3e-4``, ``[a, b]``, ``{type: noise}``) by the bounded loader
    (``limits.parse_yaml``: aliases counted before the value is built, no ``!include`` or other tags); ConfigError
    naming the flag when it is not readable. An empty value stays ""."""
    if text == "":
        return text
    try:
        return parse_yaml(text, flag, "flag value")
    except DataError as e:
        raise ConfigError([str(e)]) from None


def check_utf8(where: str, text: str) -> str:
    """``text`` when it is valid UTF-8 (Python decodes other bytes of argv and stdin to lone surrogates), else a
    ConfigError naming ``where`` and the byte offset of the first undecodable byte."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        offset = len(text[: e.start].encode("utf-8", "surrogateescape"))
        bad = text[e.start].encode("utf-8", "surrogateescape")
        raise ConfigError([f"{where}: not valid UTF-8 text (byte {offset}: {bad!r}); give the text in UTF-8"]) from None
    return text


def _known(parser: argparse.ArgumentParser, key: str) -> Any:
    return parser._option_string_actions.get(f"--{key}")


def _usage(prog: str, positional: Sequence[str]) -> str:
    return " ".join([prog, *(p.upper() for p in positional), "[--config FILE] [--OPTION VALUE ...]"])


def _chosen(cls: type, preset: Callable[[], Any] | None, config: str, flags: dict[str, Any]) -> Any:
    """The config the help describes: preset < config file < flags, decoded without range checks (a value that does
    not decode keeps the preset's)."""
    layers: list[tuple[str, Any]] = []
    try:
        layers += [(config, read_config_file(config))] if config else []
    except (ConfigError, FileNotFoundError):
        pass
    base = preset() if preset is not None else cls()
    if not isinstance(base, cls) and issubclass(cls, type(base)):  # a command adding fields to a config (RunCommand)
        base = cls(**{f.name: getattr(base, f.name) for f in dataclasses.fields(base)})
    cfg, _ = layered(base, [*layers, ("flags", deflatten(flags))])
    return base if cfg is None else cfg


# ------------------------------------------------------------------ help


def help_text(obj: Any, prog: str, description: str = "", positional: Sequence[str] = ()) -> str:
    """``--help`` of a command whose config is ``obj``: usage, description, the options not in a section, then each
    section (a nested config) with its options and those of the component each of its choices names (not those of
    every registered component). One line per option (name, type, default) and its docstring wrapped below it."""
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 100))
    out = [f"usage: {_usage(prog, positional)}", ""]
    if description:
        out += [*textwrap.wrap(" ".join(description.split()), width), ""]
    top = [f for f in dataclasses.fields(obj) if not _is_config(_hints(type(obj))[f.name])]
    out.append("options:")
    out += _option("-h, --help", "", "show this help and exit", width)
    out += _option("--config FILE", "", "Config file (.yaml or .json, e.g. a recipe); flags override it.", width)
    out += _fields(obj, top, "", width)
    for f in dataclasses.fields(obj):
        if f not in top:
            doc = field_docs(type(obj)).get(f.name, "")
            out += ["", f"{f.name}: {doc}".rstrip(": ")]
            out += _section(getattr(obj, f.name), f"{f.name}.", width)
    return "\n".join(out)


def _section(value: Any, prefix: str, width: int) -> list[str]:
    out = _fields(value, [f for f in dataclasses.fields(value) if not _is_config(_hints(type(value))[f.name])], prefix, width)
    for f in dataclasses.fields(value):
        sub_hint, sub = _hints(type(value))[f.name], getattr(value, f.name)
        if is_choice(sub_hint):
            names = ", ".join(sorted(sub_hint.get_known_choices()))
            doc = field_docs(type(value)).get(f.name, "")
            doc = _summary(doc.split(" (``")[0], 1).rstrip(".") + "."  # its first sentence; its options follow
            out += _option(f"--{prefix}{f.name}.type NAME", f" = {sub.type}", doc, width, f"One of: {names}.")
            out += _fields(sub, dataclasses.fields(sub), f"{prefix}{f.name}.", width)
        elif _is_config(sub_hint):
            out += _section(sub, f"{prefix}{f.name}.", width)
    return out


def _fields(obj: Any, fields: Sequence[dataclasses.Field], prefix: str, width: int) -> list[str]:
    docs, hints, out = field_docs(type(obj)), _hints(type(obj)), []
    for f in fields:
        hint, value = hints[f.name], getattr(obj, f.name)
        item = _list_of_config(hint)
        names = f"One of: {', '.join(sorted(item.get_known_choices()))}." if item is not None and is_choice(item) else ""
        out += _option(f"--{prefix}{f.name} {_type_name(hint)}", f" = {_show(value)}", docs.get(f.name, ""), width, names)
    return out


def _option(name: str, default: str, doc: str, width: int, extra: str = "", column: int = 30) -> list[str]:
    """``  --name TYPE = default``, then the doc's first sentences (and ``extra``) from ``column`` or two spaces after
    the name, wrapped at ``width`` with continuation lines from ``column``."""
    head = f"  {name}{default}"
    start = max(column, len(head) + 2)
    text = f"{_summary(doc, 2 * (width - column))} {extra}".strip()
    first = textwrap.wrap(text, max(width - start, 20))[:1] if width - start >= 20 else []
    rest = text[len(first[0]) :].strip() if first else text
    lines = [f"{head:<{start}}{first[0]}" if first else head]
    return lines + [" " * column + line for line in textwrap.wrap(rest, width - column)]


def _summary(doc: str, limit: int) -> str:
    """The sentences of ``doc`` that fit in ``limit`` characters (at least the first)."""
    out = ""
    for sentence in re.split(r"(?<=\.)\s+(?=[A-Z0-9`(])", " ".join(doc.replace("``", "`").split())):
        if out and len(out) + 1 + len(sentence) > limit:
            break
        out = f"{out} {sentence}".strip()
    return out


def _type_name(hint: Any) -> str:
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint) or (str,)
        return f"[{_type_name(item)} ...]"
    if typing.get_origin(hint) is typing.Literal:
        return "{" + ",".join(map(str, typing.get_args(hint))) + "}"
    name = getattr(hint, "kind", None) if is_choice(hint) else getattr(hint, "__name__", str(hint))
    return str(name).replace("typing.", "").upper()


def _show(value: Any) -> str:
    data = to_dict(value)
    text = json.dumps(data) if not isinstance(data, str) else (data if data else "''")
    if isinstance(data, list) and all(isinstance(d, dict) and set(d) >= {"type"} for d in data):
        text = "[" + ", ".join(d["type"] for d in data) + "]"  # a list of components: their names
    return text if len(text) <= 60 else text[:57] + "..."

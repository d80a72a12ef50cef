"""Command-line flags of a config dataclass, parsed by draccus's argument parser.

draccus builds one flag per field (``--train.lr``; a choice's options as ``--model.encoder.hidden``, its
type as ``--model.encoder.type``), with each field's docstring as help. This module asks it for the
flags given and leaves the values to ``config.build``, which layers them over the command's preset and
a ``--config`` file (draccus would decode them over the class defaults alone). It adds:

- ``--config FILE`` (a YAML or JSON run config);
- several words after a list flag (``--eval.conditions real zeros``) become one YAML list;
- a ``str`` field's value is taken as text, verbatim (``text_flags``); other values are read as YAML, and
  every value must be valid UTF-8 (``check_utf8``);
- a flag of an older spelling (``--data.num_patients``, now ``--data.source.num_patients``) is taken and
  migrated like the key in an old config file; a dashed spelling is refused naming the underscore one.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import re
import sys
import typing
from typing import Any

from draccus.argparsing import ArgumentParser
from draccus.help_formatter import SimpleHelpFormatter

from ecg_bench.config import OLD_KEYS, _hints, _is_config, _list_of_config, is_choice, load_components
from ecg_bench.errors import ConfigError, DataError
from ecg_bench.limits import parse_yaml
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

OLD_LIST_FLAGS = {"eval.ablations", "eval.leads", "data.question_types", "data.qa_splits", "data.mix"}
"""Flags of an older spelling that took several words."""


def list_flags(cls: type, prefix: str = "") -> set[str]:
    """Dotted names of the list-valued fields of ``cls`` (a choice's: those of any of its registered options)."""
    out: set[str] = set()
    for f in dataclasses.fields(cls):
        hint = _hints(cls)[f.name]
        name = f"{prefix}{f.name}"
        if typing.get_origin(hint) is list or _list_of_config(hint) is not None:
            out.add(name)
        elif is_choice(hint):
            for sub in hint.get_known_choices().values():
                out |= list_flags(sub, f"{name}.")
        elif _is_config(hint):
            out |= list_flags(hint, f"{name}.")
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


class _HelpFormatter(SimpleHelpFormatter):
    """draccus's help formatter, with a literal ``%`` in a docstring ("10 %") kept instead of crashing argparse."""

    def _expand_help(self, action: argparse.Action) -> str:
        text = self._get_help_string(action) or ""
        escaped = re.sub(r"%(?!\(\w+\)[sdr])", "%%", text)
        return super()._expand_help(_with_help(action, escaped))


def _with_help(action: argparse.Action, text: str) -> argparse.Action:
    clone = copy.copy(action)
    clone.help = text
    return clone


def parse_flags(cls: type, argv: list[str], prog: str, description: str = "") -> tuple[str, dict[str, Any]]:
    """``(config file or "", {dotted name: value})`` from ``argv`` for config dataclass ``cls``; ``--help`` prints
    the options and exits 0; an unknown flag exits 2 naming it (argparse's usage error)."""
    load_components()
    dp = ArgumentParser(cls, formatter_class=_HelpFormatter, prog=prog, description=description, usage=f"{prog} [--config FILE] [--SECTION.OPTION VALUE ...]")
    parser = dp.parser
    _tidy_help(parser, cls)
    parser.add_argument("--config", metavar="FILE", help="Run config file (.yaml or .json, e.g. a recipe); flags override it.")
    argv = _join_lists(list(argv), list_flags(cls) | OLD_LIST_FLAGS)
    config, old, rest = "", {}, []
    i = 0
    while i < len(argv):
        a = argv[i]
        key, eq, val = a[2:].partition("=") if a.startswith("--") else ("", "", "")
        if key in ("config", "config_path"):
            config = val if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            i += 1 if eq else 2
            continue
        if key in OLD_KEYS and _known(parser, key) is None:
            value = val if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            log.warning("--%s is now --%s (the old flag still works)", key, OLD_KEYS[key])
            old[key] = yaml_value(f"--{key}", value)
            i += 1 if eq else 2
            continue
        if key and "-" in key and _known(parser, key) is None and _known(parser, key.replace("-", "_")) is not None:
            parser.error(f"unrecognized argument --{key}: flags are spelled with underscores, --{key.replace('-', '_')}")
        rest.append(a)
        i += 1
    if "-h" in rest or "--help" in rest:
        parser.print_help()
        sys.exit(0)
    for action in parser._actions:  # as draccus does: values stay strings, parsed as YAML below
        action.default = argparse.SUPPRESS
        action.type = str
        if action.choices:
            action.choices = [str(c) for c in action.choices]
    ns, unknown = parser.parse_known_args(rest)
    if unknown:
        parser.error("unrecognized arguments: " + " ".join(unknown))
    text = text_flags(cls)
    values = {k: v for k, v in vars(ns).items() if k not in ("config", "config_path")}
    for k, v in values.items():
        check_utf8(f"--{k}", v)
    flags = {k: v if k in text else yaml_value(f"--{k}", v) for k, v in values.items()}
    return config, {**old, **flags}


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


def _tidy_help(parser: argparse.ArgumentParser, cls: type) -> None:
    """draccus offers ``--SECTION FILE`` (a sub-config file) for every section and choice, some twice: hide them,
    except a choice's, which takes a component name (``--model.encoder spectral`` = ``--model.encoder.type spectral``)."""
    choices = _choice_paths(cls)
    seen: set[str] = set()
    for group in parser._action_groups:
        for action in group._group_actions:
            opt = action.option_strings[0] if action.option_strings else ""
            if opt == "--config_path" or (action.help or "").startswith("Config file for"):
                dotted = opt[2:]
                if dotted in choices and dotted not in seen:
                    seen.add(dotted)
                    action.help, action.metavar = f"Same as --{dotted}.type NAME.", "NAME"
                else:
                    action.help = argparse.SUPPRESS


def _choice_paths(cls: type, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for f in dataclasses.fields(cls):
        hint = _hints(cls)[f.name]
        if is_choice(hint):
            out.add(f"{prefix}{f.name}")
        elif _is_config(hint):
            out |= _choice_paths(hint, f"{prefix}{f.name}.")
    return out


def _known(parser: argparse.ArgumentParser, key: str) -> Any:
    return parser._option_string_actions.get(f"--{key}")

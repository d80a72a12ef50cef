"""``ecg-bench pretrain NAME``: run a registered pretrainer (``PRETRAINERS``) with NAME's own options.

Each pretrainer declares its options as a dataclass (``Pretrainer.options``); this module turns its fields
into flags (``--field_name``, help from the field's docstring, values coerced by ``config.coerce`` like
every config value) on a sub-command of its own, so ``ecg-bench pretrain NAME --help`` shows only NAME's
options and ``ecg-bench pretrain --help`` lists the pretrainers. The dashed spelling (``--num-samples``)
is accepted as a hidden alias of ``--num_samples``.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Iterator
from typing import Any

from ecg_bench.config import add_flag, coerce, field_docs
from ecg_bench.errors import ConfigError
from ecg_bench.models.encoders import PRETRAINERS


@dataclasses.dataclass(frozen=True)
class Option:
    """One flag of a pretrainer: where its value goes in the options dataclass."""

    path: tuple[str, ...]
    """Field names from the options dataclass down to this field (one, or two for a nested dataclass field)."""
    hint: Any
    """Declared type of the field (what ``config.coerce`` converts the flag's string to)."""
    default: Any
    """Default value, shown in the help."""
    doc: str
    """The field's docstring: the flag's help."""
    required: bool
    """Whether the flag must be given (``field(metadata={"required": True})``)."""


def options_of(cls: type) -> Iterator[Option]:
    """The flags of options dataclass ``cls``; a field whose type is a dataclass contributes its fields instead."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            for o in options_of(hint):
                yield dataclasses.replace(o, path=(f.name, *o.path))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        yield Option((f.name,), hint, default, docs.get(f.name, ""), bool(f.metadata.get("required")))


def _coercer(o: Option):
    def convert(value: str) -> Any:
        try:
            return coerce(value, o.hint, f"--{o.path[-1]}")
        except ConfigError as e:
            raise argparse.ArgumentTypeError("; ".join(e.problems)) from None

    return convert


def add_options(p: argparse.ArgumentParser, cls: type) -> None:
    """Add one flag per option of ``cls`` to ``p`` (``%`` in docstrings escaped: argparse formats help with it)."""
    seen: set[str] = set()
    for o in options_of(cls):
        name = o.path[-1]
        if name in seen:
            raise TypeError(f"{cls.__name__}: option {name!r} is declared twice (flags are the leaf field names)")
        seen.add(name)
        doc = o.doc.replace("%", "%%")
        metavar = getattr(o.hint, "__name__", "value").upper()
        kw: dict[str, Any] = {"dest": "pretrain:" + ".".join(o.path), "type": _coercer(o), "metavar": metavar}
        help_text = f"{doc} (required)" if o.required else f"{doc} (default: {o.default!r})"
        add_flag(p, name, required=o.required, default=argparse.SUPPRESS, help=help_text, **kw)  # + hidden --dashed-name


def options_from_args(cls: type, args: argparse.Namespace) -> Any:
    """An instance of ``cls``: its defaults, overridden by the flags given."""
    opts = cls()
    for key, value in vars(args).items():
        if key.startswith("pretrain:"):
            *parents, leaf = key[len("pretrain:") :].split(".")
            obj = opts
            for part in parents:
                obj = getattr(obj, part)
            setattr(obj, leaf, value)
    return opts


def add_arguments(p: argparse.ArgumentParser) -> None:
    """One sub-command per registered pretrainer, each with its own options."""
    sub = p.add_subparsers(dest="pretrainer", metavar="NAME", required=True,
                           help="the pretrainer: " + ", ".join(PRETRAINERS.names()))  # fmt: skip
    for name in PRETRAINERS.names():
        spec = PRETRAINERS.get(name)
        sp = sub.add_parser(name, help=spec.description.replace("%", "%%"), description=spec.description.replace("%", "%%"))
        add_options(sp, spec.options)


def run(args: argparse.Namespace) -> str:
    """Run the pretrainer named by ``args.pretrainer`` with the parsed options; returns its summary."""
    spec = PRETRAINERS.get(args.pretrainer)
    return spec.run(options_from_args(spec.options, args))

"""The ``ecg-bench`` command. ``COMMANDS`` is the one table from command name to entry function.

The commands live beside this file: ``run.py`` (quickstart, run, evaluate, data, config), ``tools.py`` (tokenizer,
pretrain, report, render, probe, import-encoder, chat, sweep) and ``options.py``; each is a function
``cmd_NAME(args) -> exit status`` and prints the command's output (everything else logs).

Every command parses its options the same way: a config dataclass (in its command module) whose fields are the
flags, read by ``flags.parse_flags`` (draccus): ``--train.max_steps 50``, choice-typed components as
``--model.encoder.type spectral --model.encoder.hidden 64``, positional words for the fields a command names
(``sweep GRID``), and ``--help`` listing the sections and the options of the components chosen, each with its field's
docstring. Precedence: command preset < ``--config FILE`` < command-line flags (``config.build``). A list takes
several words (``--eval.conditions real zeros``) or YAML (``--eval.conditions "[real, {type: noise, snr_db: 5}]"``).
The command modules and the component packages are imported only when a command runs, so ``ecg-bench --help``
starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ecg_bench.errors import ECGBenchError
from ecg_bench.logging_utils import setup_logging

# ------------------------------------------------------------------ list (the catalogue of components)


def cmd_list(args) -> int:
    """List the registered components of each kind; ``--details KIND`` prints each one's options with their docs."""
    regs = _registries()
    kind = args.overrides.get("details") or ""
    if not kind:
        for name, reg in regs.items():
            print(f"{name}: {', '.join(reg.names())}")
        return 0
    if kind not in regs:
        raise ECGBenchError(f"list --details: unknown kind {kind!r}; valid: {', '.join(regs)}")
    print(component_details(kind, regs[kind]))
    return 0


def component_details(kind: str, reg: Any) -> str:
    """Each component of registry ``reg``: its name, what it is, and its options (type, default, doc), as
    ``--<path>.type NAME --<path>.OPTION VALUE`` would set them."""
    from ecg_bench.config import iter_options

    where = {"sources": "data.source", "mapped": "data.mapped", "representations": "model.representation",
             "encoders": "model.encoder", "projectors": "model.projector", "elms": "model.elm",
             "conditions": "eval.conditions", "metrics": "eval.metrics", "pretrainers": "pretrain NAME"}.get(kind, "")  # fmt: skip
    lines = [f"{kind} (set with {where})" if where else kind]
    for name in reg.names():
        obj = reg.get(name)
        opts = reg.options(name) if getattr(reg, "options_base", None) is not None else None
        doc = (opts.__doc__ if opts is not None and opts.__doc__ and not opts.__doc__.startswith(opts.__name__ + "(")
               else getattr(obj, "__doc__", "") or "")  # fmt: skip
        lines.append(f"\n{name}: {' '.join(doc.split())}")
        fields = list(iter_options(opts)) if opts is not None else []
        if not fields:
            lines.append("    (no options)")
        for opt, typ, default, odoc in fields:
            tname = getattr(typ, "__name__", str(typ)).replace("typing.", "")
            lines.append(f"    {opt} ({tname}, default {default!r}): {odoc}")
    return "\n".join(lines)


def _registries() -> dict[str, Any]:
    from ecg_bench.registry import all_registries

    return all_registries()


@dataclass
class ListCommand:
    """``ecg-bench list``."""

    details: str = ""
    """A kind (sources, mapped, representations, encoders, projectors, elms, conditions, metrics, pretrainers):
    print each component's options with their docs."""


# ------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Command:
    """A command: its entry function and the config dataclass its flags fill, as ``"module:name"`` (imported when
    the command runs)."""

    entry: str
    """``module:function`` taking the parsed arguments and returning the exit status."""
    config: str
    """``module:Class``: the command's options dataclass (for ``sub``, a registry whose entries carry ``options``)."""
    defaults: str = ""
    """``module:function`` returning the defaults the config file and flags are layered over (empty = the class's)."""
    positional: tuple[str, ...] = ()
    """Fields filled by the leading words of the command line (``sweep GRID``, ``report RUN...``)."""
    sub: bool = False
    """The first word names a registry entry whose ``options`` dataclass the rest parses (``pretrain NAME``)."""

    def function(self) -> Callable[[argparse.Namespace], int]:
        return _resolve(self.entry)

    def preset(self) -> Any:
        """The defaults the command's config file and flags are layered over."""
        return _resolve(self.defaults or self.config)()

    def summary(self) -> str:
        """The first line of the entry function's docstring."""
        return (self.function().__doc__ or "").strip().split("\n")[0]


def _resolve(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


RUN, TOOLS = "ecg_bench.cli.run", "ecg_bench.cli.tools"
COMMANDS: dict[str, Command] = {
    "quickstart": Command(f"{RUN}:cmd_quickstart", f"{RUN}:RunCommand", defaults=f"{RUN}:quickstart_config"),
    "run": Command(f"{RUN}:cmd_run", f"{RUN}:RunCommand", defaults="ecg_bench.config:RunConfig"),
    "evaluate": Command(f"{RUN}:cmd_evaluate", f"{RUN}:EvaluateCommand"),
    "data": Command(f"{RUN}:cmd_data", f"{RUN}:DataCommand"),
    "config": Command(f"{RUN}:cmd_config", "ecg_bench.config:RunConfig"),
    "list": Command("ecg_bench.cli:cmd_list", "ecg_bench.cli:ListCommand"),
    "tokenizer": Command(f"{TOOLS}:cmd_tokenizer", "ecg_bench.cli.tokenizer:TokenizerCommand", positional=("action",)),
    "pretrain": Command(f"{TOOLS}:cmd_pretrain", "ecg_bench.models.encoders:PRETRAINERS", sub=True),
    "report": Command(f"{TOOLS}:cmd_report", "ecg_bench.cli.options:ReportCommand", positional=("runs",)),
    "render": Command(f"{TOOLS}:cmd_render", "ecg_bench.cli.options:RenderCommand"),
    "probe": Command(f"{TOOLS}:cmd_probe", "ecg_bench.evaluation.probe_options:ProbeOptions"),
    "import-encoder": Command(f"{TOOLS}:cmd_import_encoder", f"{TOOLS}:ImportEncoderCommand"),
    "chat": Command(f"{TOOLS}:cmd_chat", f"{TOOLS}:ChatCommand"),
    "sweep": Command(f"{TOOLS}:cmd_sweep", f"{TOOLS}:SweepCommand", positional=("grid",)),
}


# ------------------------------------------------------------------ parsing


def _version() -> str:
    """The installed distribution's version (``importlib.metadata``), or the package's own if not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ecg-bench")
    except PackageNotFoundError:
        from ecg_bench._version import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The top level: global options and the command; each command's own options are parsed by ``parse_command``."""
    parser = argparse.ArgumentParser(prog="ecg-bench", description="Build, train and benchmark ECG-language models.")
    parser.add_argument("--log_level", default="INFO", help="Logging level (DEBUG, INFO, WARNING, ERROR).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub.add_parser(name, help=command.summary(), add_help=False, prefix_chars="\0")  # the rest goes to the command
    return parser


def main(argv: list[str] | None = None) -> int:
    from ecg_bench.processes import die_with_launcher

    die_with_launcher()  # a rank of `run --nproc N`: dies with the process that launched it
    argv = list(sys.argv[1:] if argv is None else argv)
    split = next((i for i, a in enumerate(argv) if a in COMMANDS), len(argv))
    if split == len(argv):
        parser = build_parser()
        parser.parse_args(argv)
        parser.print_help()
        return 0
    top = argparse.ArgumentParser(prog="ecg-bench", add_help=False)
    top.add_argument("--log_level", default="INFO")
    name, rest = argv[split], argv[split + 1 :]
    setup_logging(top.parse_args(argv[:split]).log_level)
    spec = COMMANDS[name]
    try:
        args = parse_command(name, spec, rest)
        args.argv = argv  # the whole command line, for --nproc's relaunch under torchrun
        return spec.function()(args)
    except (ECGBenchError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def parse_command(name: str, spec: Command, argv: list[str]) -> argparse.Namespace:
    """The command's arguments: its preset, ``--config FILE`` and the flags as dotted overrides (strings, decoded by
    ``config.build``); ``--help`` prints the options and exits 0."""
    from ecg_bench.flags import parse_flags

    prog, doc = f"ecg-bench {name}", (spec.function().__doc__ or "").strip()
    cls = _resolve(spec.config)
    args = argparse.Namespace(command=name, sub="")
    if spec.sub:
        registry = cls
        if not argv or argv[0].startswith("-"):
            print(_sub_usage(prog, doc, registry))
            if not argv:
                raise ECGBenchError(f"{name} needs a NAME: one of {', '.join(registry.names())}")
            sys.exit(0)
        args.sub, argv = argv[0], argv[1:]
        entry = registry.get(args.sub)  # an unknown NAME: UnknownNameError listing the registered ones
        cls, prog, doc = entry.options, f"{prog} {args.sub}", entry.description
    args.preset = cls if spec.sub else spec.preset
    args.config, args.overrides = parse_flags(cls, argv, prog=prog, description=doc, preset=args.preset,
                                              positional=spec.positional)  # fmt: skip
    return args


def _sub_usage(prog: str, doc: str, registry: Any) -> str:
    lines = [f"usage: {prog} NAME [--OPTION VALUE ...]", "", doc, "", "NAME is one of:"]
    lines += [f"  {n:<12} {registry.get(n).description}" for n in registry.names()]
    return "\n".join([*lines, "", f"`{prog} NAME --help` shows NAME's options."])

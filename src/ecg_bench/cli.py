"""The ``ecg-bench`` command. ``COMMANDS`` is the one table from command name to entry function.

Run-config options are generated from the config dataclasses (``--train.max_steps 50``); their help
text is each field's docstring. Precedence: command preset < ``--config FILE`` < command-line flags.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ecg_bench.config import RunConfig, add_flag, build, iter_leaf_fields
from ecg_bench.errors import ECGBenchError
from ecg_bench.logging_utils import setup_logging


def quickstart_config() -> RunConfig:
    """The embedded default: synthetic ECGs and questions, offline, a few minutes on 2 CPU cores."""
    from ecg_bench.presets import quickstart

    return quickstart()


def _load_config(args) -> RunConfig:
    """The command's preset < ``--config FILE`` (layered over it, section by section) < flags, every value coerced
    by ``config.coerce`` and checked, registry names and the LLM included: one ConfigError lists every problem."""
    from ecg_bench.pipeline import config_problems

    return build(args.preset(), args.config or None, args.overrides, checks=[config_problems])


# ------------------------------------------------------------------ command functions


def cmd_quickstart(args) -> int:
    """Synthetic ECGs -> QA -> folds -> train an ELM -> evaluate with real, zeroed and no signal."""
    from ecg_bench.pipeline import run

    cfg = _load_config(args)
    if getattr(args, "nproc", 1) > 1 and "LOCAL_RANK" not in os.environ:
        return launch_torchrun(args)
    results = run(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: one table, rank 0's
        _print_results(results, cfg)
    return 0


def launch_torchrun(args) -> int:
    """Start this very command again as ``args.nproc`` processes with torchrun (torch.distributed.run) on this
    machine, and wait for them; the exit status is the worst of theirs."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    from ecg_bench.training.distributed import resolve_strategy

    resolve_strategy(_load_config(args).train.strategy, args.nproc)  # e.g. single on 2 processes: refused here, once
    rest = _without_nproc(args.argv)
    targs = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(args.nproc), "--module", "ecg_bench", *rest])
    try:
        torchrun(targs)
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values()]
        return max((c for c in codes if c and c > 0), default=1)
    return 0


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def _launch_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="Processes on this machine (one per GPU): starts torchrun --nproc-per-node N for you; pair it with "
                        "--train.strategy ddp or fsdp (auto = ddp). For several machines run torchrun yourself "
                        "(README).")  # fmt: skip


def cmd_run(args) -> int:
    """Train and evaluate as configured (a recipe YAML with --config, plus overrides)."""
    return cmd_quickstart(args)


def cmd_evaluate(args) -> int:
    """Evaluate a checkpoint folder (its config.json, plus overrides) under the signal ablations, into a new folder
    (<checkpoint>/eval-<time>, or --output_dir if new or empty); the training run's files are never rewritten."""
    from ecg_bench.pipeline import evaluation_defaults, evaluation_store, run

    if not args.checkpoint:
        raise ECGBenchError("evaluate needs --checkpoint DIR (a folder written by train/run/quickstart)")
    args.config = args.config or str(Path(args.checkpoint) / "config.json")
    trained = RunConfig.load(args.config)
    given = set(args.overrides)
    for key, value in evaluation_defaults(trained, args.checkpoint).items():
        args.overrides.setdefault(key, value)
    cfg = _load_config(args)
    if args.nproc > 1 and "LOCAL_RANK" not in os.environ:  # every process evaluates into the one folder chosen here
        args.argv += [] if "output_dir" in given else ["--output_dir", cfg.output_dir]
        return launch_torchrun(args)
    if "data.store_dir" not in given:
        cfg.data.store_dir = evaluation_store(cfg, trained, args.checkpoint)
    cfg.train.resume_from = args.checkpoint
    results = run(cfg, train=False)
    if int(os.environ.get("RANK", "0")) == 0:
        _print_results(results, cfg)
    return 0


def cmd_data(args) -> int:
    """Build the segment store and the conversations, assign patient-disjoint folds, and report counts."""
    from ecg_bench.data.store import skip_summary
    from ecg_bench.pipeline import prepare_data

    cfg = _load_config(args)
    data = prepare_data(cfg)
    meta = data.store.meta
    print(f"store {data.store.path}: {len(data.store)} segments from {meta.get('num_records')} records")
    print(skip_summary(meta))
    print(f"fold {cfg.data.fold}/{cfg.data.num_folds}: {len(data.train)} train, {len(data.test)} test conversations")
    print(f"folds (patient-disjoint, checked): {data.folds_file}")
    report = data.folds_file.with_name("mapping_report.json")
    for r in json.loads(report.read_text())["datasets"] if report.is_file() else []:
        print(f"{r['mapped']}: {r['entries']} entries -> {r['items']} conversations; skipped {r['skipped'] or 'none'} ({report})")
    if cfg.data.export_hf:
        print(f"Hugging Face dataset (save_to_disk): {cfg.data.export_hf}")
    return 0


def cmd_config(args) -> int:
    """Print the full run config (preset or --config plus overrides) as JSON, e.g. to start a recipe."""
    print(json.dumps(_load_config(args).to_dict(), indent=2))
    return 0


def cmd_list(args) -> int:
    """List the registered names: sources, mapped datasets, representations, encoders, ELMs, LLMs, metrics."""
    for kind, reg in _registries().items():
        print(f"{kind}: {', '.join(reg.names())}")
    return 0


def cmd_tokenizer(args) -> int:
    """ECG-Byte tokenizer: train (BPE on a store sample), verify, encode (store -> ids), import (original pickle)."""
    from ecg_bench.ecg_byte.commands import run_tokenizer_command

    return run_tokenizer_command(args)


def _tokenizer_arguments(p: argparse.ArgumentParser) -> None:
    from ecg_bench.ecg_byte.commands import add_tokenizer_arguments

    add_tokenizer_arguments(p)


def cmd_pretrain(args) -> int:
    """Pretrain an encoder with a registered pretrainer (`ecg-bench pretrain NAME --help` shows NAME's options)."""
    from ecg_bench.training.pretrain import run

    print(run(args))
    return 0


def _pretrain_arguments(p: argparse.ArgumentParser) -> None:
    from ecg_bench.training.pretrain import add_arguments

    add_arguments(p)


def _registries() -> dict[str, Any]:
    from ecg_bench.data.mapped.base import MAPPED
    from ecg_bench.data.sources.base import SOURCES
    from ecg_bench.evaluation.metrics import METRICS
    from ecg_bench.models.elm import ELMS
    from ecg_bench.models.encoders import ENCODERS, PRETRAINERS
    from ecg_bench.models.llm import LLMS
    from ecg_bench.representations.base import REPRESENTATIONS

    return {"sources": SOURCES, "mapped": MAPPED, "representations": REPRESENTATIONS, "encoders": ENCODERS,
            "elms": ELMS, "llms": LLMS, "metrics": METRICS, "pretrainers": PRETRAINERS}  # fmt: skip


def _print_results(results: dict[str, Any], cfg: RunConfig) -> None:
    from ecg_bench.pipeline import results_table

    print(results_table(results))
    print("values in %, [95 % CI] from a bootstrap resampling patients (n = answers scored)")
    print(f"results: {cfg.output_dir}/results.json  ({results['seconds']:.0f} s)")


# ------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Command:
    func: Callable[[argparse.Namespace], int]
    run_options: bool = True
    """Whether the command takes the run-config options."""
    preset: Callable[[], RunConfig] = RunConfig
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    """Adds the command's own arguments (beyond the run-config options)."""


COMMANDS: dict[str, Command] = {
    "quickstart": Command(cmd_quickstart, preset=quickstart_config, add_arguments=_launch_arguments),
    "run": Command(cmd_run, add_arguments=_launch_arguments),
    "evaluate": Command(cmd_evaluate, add_arguments=_launch_arguments),
    "data": Command(cmd_data),
    "config": Command(cmd_config),
    "list": Command(cmd_list, run_options=False),
    "tokenizer": Command(cmd_tokenizer, run_options=False, add_arguments=_tokenizer_arguments),
    "pretrain": Command(cmd_pretrain, run_options=False, add_arguments=_pretrain_arguments),
}


# ------------------------------------------------------------------ parser

# Short spellings of the most used run options (the dotted form always works too).
SHORT_FLAGS: dict[str, tuple[str, ...]] = {
    "model.llm": ("--llm",),
    "model.elm": ("--elm",),
    "model.encoder": ("--encoder",),
    "train.max_steps": ("--steps",),
    "train.device": ("--device",),
}


def _add_run_options(p: argparse.ArgumentParser, preset: RunConfig) -> None:
    p.add_argument(
        "--config", default="", metavar="FILE", help="Run config file (.yaml or .json, e.g. a recipe); flags override it."
    )
    groups: dict[str, argparse._ArgumentGroup] = {}
    for dotted, typ, _, doc in iter_leaf_fields(RunConfig):
        section = dotted.split(".")[0] if "." in dotted else "run"
        g = groups.setdefault(section, p.add_argument_group(f"{section} options"))
        default = _get_dotted(preset, dotted)
        kw: dict[str, Any] = {"dest": f"opt:{dotted}", "default": argparse.SUPPRESS, "help": f"{doc} (default: {default!r})"}
        # Flags stay strings here: config.build converts them with the same coercion as config files.
        if typing.get_origin(typ) is list:
            kw.update(nargs="+", metavar="X")
        elif typ is bool:
            kw.update(metavar="{true,false}")
        else:
            kw.update(metavar=getattr(typ, "__name__", "value").upper())
        g.add_argument(f"--{dotted}", *SHORT_FLAGS.get(dotted, ()), **kw)


def _get_dotted(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def _version() -> str:
    """The installed distribution's version (``importlib.metadata``), or the package's own if not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ecg-bench")
    except PackageNotFoundError:
        from ecg_bench import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ecg-bench", description="Build, train and benchmark ECG-language models.")
    add_flag(parser, "log_level", default="INFO", help="Logging level (DEBUG, INFO, WARNING, ERROR).")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        doc = (command.func.__doc__ or "").strip()
        p = sub.add_parser(name, help=doc, description=doc)
        p.set_defaults(command_spec=command)
        if name == "evaluate":
            p.add_argument(
                "--checkpoint",
                default="",
                metavar="DIR",
                help="Checkpoint folder to evaluate (its config.json is the base config).",
            )
        if command.add_arguments is not None:
            command.add_arguments(p)
        if command.run_options:
            _add_run_options(p, command.preset())
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if not getattr(args, "nproc", 1) >= 1:
        parser.error(f"--nproc must be >= 1, got {args.nproc}")
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    setup_logging(args.log_level)
    spec: Command = args.command_spec
    args.preset = spec.preset
    args.overrides = {k[4:]: v for k, v in vars(args).items() if k.startswith("opt:")}
    try:
        return spec.func(args)
    except (ECGBenchError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

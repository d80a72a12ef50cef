"""The ``ecg-bench`` command. ``COMMANDS`` is the one table from command name to entry function.

Each command parses its own config dataclass with draccus (``--train.max_steps 50``, choice-typed
components as ``--model.encoder.type spectral --model.encoder.hidden 64``), so its ``--help`` shows only
the options it uses, each with its field's docstring. Precedence: command preset < ``--config FILE`` <
command-line flags (``config.build``). A list takes several words (``--eval.conditions real zeros``) or
YAML (``--eval.conditions "[real, {type: noise, snr_db: 5}]"``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_bench.config import DataConfig, EvalConfig, RunConfig, TrainConfig, build
from ecg_bench.errors import ConfigError, ECGBenchError
from ecg_bench.evaluation.probe_options import ProbeOptions
from ecg_bench.logging_utils import setup_logging


def quickstart_config() -> RunConfig:
    """The embedded default: synthetic ECGs and questions, offline, a few minutes on 2 CPU cores."""
    from ecg_bench.presets import quickstart

    return quickstart()


def _load_config(args) -> RunConfig:
    """The command's preset < ``--config FILE`` (layered over it, section by section) < flags, decoded by draccus and
    checked, component options and the LLM included: one ConfigError lists every problem."""
    from ecg_bench.pipeline import config_problems

    return build(args.preset(), args.config or None, args.overrides, checks=[config_problems])


# ------------------------------------------------------------------ command functions


def cmd_quickstart(args) -> int:
    """Synthetic ECGs -> QA -> folds -> train an ELM -> evaluate with real, zeroed and no signal."""
    from ecg_bench.pipeline import run

    nproc = _pop_nproc(args)
    cfg = _load_config(args)
    if nproc > 1 and "LOCAL_RANK" not in os.environ:
        return launch_torchrun(args, cfg, nproc)
    results = run(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: one table, rank 0's
        _print_results(results, cfg)
    return 0


def _pop_nproc(args) -> int:
    """The command's ``nproc`` (taken out of the overrides: it is how this invocation is launched, not a run setting),
    range-checked before any work."""
    from ecg_bench.errors import ConfigError

    nproc = args.overrides.pop("nproc", 1)
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError([f"nproc must be an integer >= 1 (processes on this machine, one per GPU), got {nproc!r}"])
    return nproc


def launch_torchrun(args, cfg: RunConfig, nproc: int) -> int:
    """Start this very command again (``python -m ecg_bench <the same argv>`` without ``--nproc``) as ``nproc``
    processes with torchrun (torch.distributed.run) on this machine, and wait for them; the exit status is the worst
    of theirs. ``cfg`` is the command's checked config: a strategy that cannot run on ``nproc`` processes is refused
    here, once, before any process starts."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    from ecg_bench.training.distributed import resolve_strategy

    resolve_strategy(cfg.train.strategy, nproc)  # e.g. single on 2 processes: refused here, once
    rest = _without_nproc(args.argv)
    targs = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(nproc), "--module", "ecg_bench", *rest])
    try:
        torchrun(targs)
    except ChildFailedError as e:
        codes = [f.exitcode for f in e.failures.values()]
        return max((c for c in codes if c and c > 0), default=1)
    return 0


def _without_nproc(argv: list[str]) -> list[str]:
    """``argv`` less ``--nproc N`` / ``--nproc=N`` (the relaunched processes run one each)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


def cmd_run(args) -> int:
    """Train and evaluate as configured (a recipe YAML with --config, plus overrides)."""
    return cmd_quickstart(args)


def cmd_evaluate(args) -> int:
    """Evaluate a checkpoint folder (its config.json, plus overrides) under the evaluation conditions, into a new
    folder (<checkpoint>/eval-<time>, or --output_dir if new or empty); the training run's files are never rewritten."""
    from ecg_bench.pipeline import config_problems, evaluation_defaults, evaluation_store, run

    checkpoint = args.overrides.pop("checkpoint", "") or ""
    if not checkpoint:
        raise ECGBenchError("evaluate needs --checkpoint DIR (a folder written by train/run/quickstart)")
    args.checkpoint = checkpoint
    nproc = _pop_nproc(args)
    trained = RunConfig.load(args.config or str(Path(checkpoint) / "config.json"))
    given = set(args.overrides)
    for key, value in evaluation_defaults(trained, checkpoint).items():
        args.overrides.setdefault(key, value)
    cfg = build(trained, None, args.overrides, checks=[config_problems])
    if nproc > 1 and "LOCAL_RANK" not in os.environ:  # every process evaluates into the one folder chosen here
        args.argv += [] if "output_dir" in given else ["--output_dir", cfg.output_dir]
        return launch_torchrun(args, cfg, nproc)
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
    from ecg_bench.pipeline import config_problems, prepare_data

    cmd = build(args.preset(), args.config or None, args.overrides)
    cfg = build(RunConfig(data=cmd.data, output_dir=cmd.output_dir), checks=[config_problems])
    data = prepare_data(cfg)
    meta = data.store.meta
    print(f"store {data.store.path}: {len(data.store)} segments from {meta.get('num_records')} records")
    print(skip_summary(meta))
    held = f", {len(data.val)} held out for validation" if data.val else ""
    if cfg.data.split == "official":
        disjoint = json.loads(data.folds_file.read_text())["patient_disjoint"]
        print(f"official split: {len(data.train)} train, {len(data.test)} test conversations{held}")
        print(f"split and patient overlaps ({'none' if disjoint else 'see overlap'}): {data.folds_file}")
    else:
        print(f"fold {cfg.data.fold}/{cfg.data.num_folds}: {len(data.train)} train, {len(data.test)} test conversations{held}")
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

    print(run(args.pretrainer, args.options))
    return 0


def cmd_report(args) -> int:
    """Benchmark report over finished runs: tables (md, csv, tex), figures and one static index.html."""
    from ecg_bench.evaluation.report import default_out, options_from_args, write_report

    out = Path(args.out) if args.out else default_out(args.runs)
    report = write_report(args.runs, out, options_from_args(args))
    print(report.tables["summary"].markdown())
    if "signal_audit" in report.tables:
        print(report.tables["signal_audit"].markdown())
    print(f"report: {report.folder / 'index.html'} ({len(report.configurations)} configurations, {len(report.figures)} figures)")
    return 0


def _report_arguments(p: argparse.ArgumentParser) -> None:
    from ecg_bench.evaluation.report import report_arguments

    report_arguments(p)


def cmd_render(args) -> int:
    """Draw one segment of a segment store as a 12-lead printout (PNG): --store DIR --index N --out ecg.png."""
    import dataclasses
    import os

    from ecg_bench.representations.image import ImageOptions, render_store_segment

    from ecg_bench.config import coerce, iter_options

    problems, given = [], {}
    for name, hint, _default, _doc in iter_options(ImageOptions):
        raw = getattr(args, f"image:{name}", None)
        if raw is not None:
            try:
                given[name] = coerce(raw, hint, f"--{name}")
            except ConfigError as e:
                problems += e.problems
    if problems:
        raise ConfigError(problems)
    options = ImageOptions(**given)
    options.check()
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ECGBenchError(f"--out {out}: expected a .png file name")
    if out.exists():
        raise ECGBenchError(f"--out {out} already exists; it is not overwritten: choose another name or remove it")
    image = render_store_segment(args.store, args.index, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, out)
    shown = {k: v for k, v in dataclasses.asdict(options).items() if k in ("layout", "width", "height")}
    print(f"wrote {out} (segment {args.index} of {args.store}; {shown})")
    return 0


def _render_arguments(p: argparse.ArgumentParser) -> None:
    from ecg_bench.config import add_flag, iter_options
    from ecg_bench.representations.image import ImageOptions

    p.add_argument("--store", required=True, metavar="DIR", help="Segment store folder (e.g. runs/ptbxl/store).")
    p.add_argument("--index", required=True, type=int, metavar="N", help="Segment index in the store (0-based).")
    p.add_argument("--out", required=True, metavar="FILE", help="PNG file to write (never overwritten).")
    group = p.add_argument_group("image options (as --model.representation.NAME of the image representation)")
    for name, _hint, default, doc in iter_options(ImageOptions):
        add_flag(group, name, dest=f"image:{name}", default=None, metavar=type(default).__name__.upper(),
                 help=f"{doc} (default: {default})")  # fmt: skip


def cmd_probe(args) -> int:
    """Linear probe of a frozen encoder on a store's labels: macro AUROC on patient-disjoint folds, patient-clustered CI."""
    from ecg_bench.evaluation.probe import format_probe, run_probe

    opts = build(args.preset(), args.config or None, args.overrides, checks=[lambda o: o.problems()])
    print(format_probe(run_probe(opts)))
    return 0


def cmd_import_encoder(args) -> int:
    """Convert a released encoder checkpoint (ST-MEM's ViT, MERL's ResNet) into an encoder folder with its contract."""
    from ecg_bench.models.encoders.mae.public import convert_st_mem
    from ecg_bench.models.encoders.merl.public import convert_merl

    cmd = build(args.preset(), args.config or None, args.overrides, checks=[lambda c: c.problems()])
    out = (convert_st_mem if cmd.format == "st_mem" else convert_merl)(cmd.src, cmd.out)
    print(f"{cmd.format} weights from {cmd.src} -> {out} (use it as the encoder's weights folder)")
    return 0


def cmd_chat(args) -> int:
    """Answer questions about one ECG file with a trained checkpoint: a WFDB record (.hea/.dat), a CinC .mat/.hea pair
    (CPSC 2018, CSN), a CODE-15 .hdf5 file with --exam_id, or a .npy/.csv [leads, samples] array with --fs. The ECG
    is preprocessed as the model's segment store was (leads, resampling, segments); a record longer than one
    segment is answered about its FIRST segment unless --segment says another (or all). Without --question,
    questions are read from stdin, one per line, until EOF; each answer sees the earlier ones."""
    from ecg_bench.inference import chat_answers, read_questions

    cmd: ChatCommand = build(args.preset(), args.config or None, args.overrides)
    segment = cmd.segment if cmd.segment == "all" else int(cmd.segment)
    questions = [cmd.question] if cmd.question else read_questions(_stdin_lines())
    file_options = {"fs": cmd.fs or None, "exam_id": None if cmd.exam_id < 0 else cmd.exam_id,
                    "leads": cmd.leads or None, "units": cmd.units}  # fmt: skip
    answers = chat_answers(cmd.checkpoint, cmd.ecg, questions, segment, cmd.max_new_tokens or None, cmd.device,
                           **file_options)  # fmt: skip
    for i, _, answer in answers:
        print(f"[segment {i}] {answer}" if segment == "all" else answer, flush=True)
    return 0


def _stdin_lines():
    if sys.stdin.isatty():
        print("question (Ctrl-D ends)> ", end="", file=sys.stderr, flush=True)
    for line in sys.stdin:
        yield line
        if sys.stdin.isatty():
            print("question> ", end="", file=sys.stderr, flush=True)


def cmd_sweep(args) -> int:
    """Benchmark sweep: a grid of run configs (GRID.yaml: base, axes, include/exclude), one run folder per cell,
    resumable, then the report over the finished cells."""
    from ecg_bench.pipeline import config_problems
    from ecg_bench.sweep import describe, load_grid, run_sweep

    grid = load_grid(args.grid, args.output_dir, checks=[config_problems])  # every cell checked before any runs
    print(describe(grid))
    if args.dry_run:
        return 0
    outcome = run_sweep(grid, jobs=args.jobs, executor=args.executor)
    for name, status in outcome.status.items():
        print(f"{status:<11} {name}")
    if outcome.failed:
        print(f"{len(outcome.failed)} of {len(outcome.cells)} cells not finished (errors in {outcome.folder / 'sweep.json'}); "
              f"run the same command again to retry them")  # fmt: skip
    if outcome.report is not None:
        print(f"report: {outcome.report / 'index.html'}")
    elif outcome.report_error:
        print(f"no report: {outcome.report_error}")
    return 1 if outcome.failed else 0


def _sweep_arguments(p: argparse.ArgumentParser) -> None:
    from ecg_bench.sweep import EXECUTORS

    p.add_argument("grid", metavar="GRID", help="Grid file (YAML): preset, base, axes, include, exclude, output_dir, "
                   "report, slurm (see README, 'Benchmark sweeps').")  # fmt: skip
    p.add_argument("--dry_run", action="store_true", help="List the cells (checked, with their status) and run none.")
    p.add_argument("--jobs", type=int, default=1, metavar="N", help="Cells run at a time (default 1): locally each with "
                   "its share of the CPU threads and, with several GPUs, its own GPU; with slurm the job array's parallelism.")  # fmt: skip
    p.add_argument("--executor", default="local", choices=EXECUTORS, help="local = subprocesses on this machine; slurm = "
                   "a SLURM job array through submitit (the grid's slurm: parameters); submitit_local = submitit's "
                   "LocalExecutor here (default: local).")  # fmt: skip
    p.add_argument("--output_dir", default="", metavar="DIR", help="Sweep folder (default: the grid's output_dir).")


def _registries() -> dict[str, Any]:
    from ecg_bench.registry import all_registries

    return all_registries()


def _print_results(results: dict[str, Any], cfg: RunConfig) -> None:
    from ecg_bench.pipeline import results_table

    print(results_table(results))
    print("values in %, [95 % CI] from a bootstrap resampling patients (n = answers scored)")
    print(f"results: {cfg.output_dir}/results.json  ({results['seconds']:.0f} s)")


# ------------------------------------------------------------------ per-command configs


@dataclass
class DataCommand:
    """``ecg-bench data``: the data settings and the folder they are written to."""

    data: DataConfig = field(default_factory=DataConfig)
    """Data settings."""
    output_dir: str = "runs/{source}"
    """Folder for the store, conversations and folds; ``{source}`` stands for data.source's type."""


# ``nproc`` is a field of the command configs (RunCommand, EvaluateCommand), not of RunConfig/TrainConfig: it says how
# this invocation is launched, not what the run is. A run with N processes x batch b trains like one process with batch
# N x b and resumes on another N, so nproc is not saved in config.json, where it would make `evaluate` of a checkpoint
# (or a rerun of its config) start N processes on a machine that may not have N GPUs, and would contradict torchrun's
# WORLD_SIZE when torchrun is started by hand. The command takes it out of the overrides (``_pop_nproc``) before the
# run config is built, and the relaunched processes get the same command line without it.


@dataclass
class RunCommand(RunConfig):
    """``ecg-bench run`` / ``quickstart``: the run config, and how many processes run it on this machine."""

    nproc: int = 1
    """Processes on this machine (one per GPU): >1 starts torchrun --nproc-per-node N running this same command
    (pair it with --train.strategy ddp or fsdp; auto = ddp). For several machines run torchrun yourself (README
    "Many GPUs and many machines"). Not saved in config.json."""


@dataclass
class EvaluateCommand:
    """``ecg-bench evaluate``: a checkpoint, and what may differ from the run that trained it."""

    checkpoint: str = ""
    """Checkpoint folder to evaluate (its config.json is the base config)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data settings (default: the training run's)."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Device, precision and threads (train.device, train.precision, train.num_threads); the rest is unused."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings (default: the training run's)."""
    output_dir: str = ""
    """Folder for results.json (default: <checkpoint>/eval-<time>); must be new or empty."""
    nproc: int = 1
    """Processes on this machine (one per GPU): >1 starts torchrun --nproc-per-node N, each process generating a
    share of the answers into the one output folder chosen before launching. Not saved in config.json."""


@dataclass
class ListCommand:
    """``ecg-bench list``."""

    details: str = ""
    """A kind (sources, mapped, representations, encoders, projectors, elms, conditions, metrics, pretrainers):
    print each component's options with their docs."""


@dataclass
class ImportEncoderCommand:
    """``ecg-bench import-encoder``."""

    format: str = ""
    """Whose release: st_mem (bakqui/ST-MEM's encoder or full checkpoint) or merl (MERL's ResNet-101 ecg_encoder)."""
    src: str = ""
    """The released .pth (read with torch.load(weights_only=True))."""
    out: str = ""
    """Encoder folder to write (new, empty, or an earlier one of ours)."""

    def problems(self) -> list[str]:
        p = [] if self.format in ("st_mem", "merl") else [f"import-encoder --format must be st_mem or merl, got {self.format!r}"]
        return p + [f"import-encoder needs --{k}" for k in ("src", "out") if not getattr(self, k)]


@dataclass
class ChatCommand:
    """``ecg-bench chat``: a checkpoint, one ECG file, and the questions about it."""

    checkpoint: str = ""
    """Checkpoint folder (or a hub id owner/name, downloaded when online) written by train/run/quickstart (required)."""
    ecg: str = ""
    """The ECG (required): a WFDB record (path with or without .hea), a CinC .mat (its .hea beside it), a CODE-15%
    .hdf5, or a .npy/.csv [leads, samples] array in mV."""
    question: str = ""
    """The question; without it, questions are read from stdin, one per line, until EOF."""
    fs: float = 0.0
    """Sampling rate (Hz) of a .npy/.csv array (0 = none given; a file with a header states its own)."""
    exam_id: int = -1
    """CODE-15% exam id in the .hdf5 file (-1 = none given; needed when it holds more than one exam)."""
    leads: list[str] = field(default_factory=list)
    """Lead names of the rows of a .npy/.csv array (empty = I II III aVR aVL aVF V1 ... V6)."""
    units: str = "mV"
    """Units of a .npy/.csv array: mV, uV or V (checked by the reader, naming the file)."""
    segment: str = "0"
    """Which segment of a record longer than the model's segment to answer about: 0 (the first), N, or all (one
    answer per segment)."""
    max_new_tokens: int = 0
    """Longest answer in tokens (0 = the checkpoint's eval.max_new_tokens)."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""

    def validate(self) -> "ChatCommand":
        p = [f"--{name} is required" for name in ("checkpoint", "ecg") if not getattr(self, name)]
        if self.segment != "all" and not self.segment.lstrip("-").isdigit():
            p.append(f"--segment {self.segment!r}: expected a segment number (0 = the first) or 'all'")
        if self.fs < 0:
            p.append(f"--fs must be a positive sampling rate in Hz (0 = none given), got {self.fs:g}")
        if self.exam_id < -1:
            p.append(f"--exam_id must be an exam id >= 0 (-1 = none given), got {self.exam_id}")
        if self.max_new_tokens < 0:
            p.append(f"--max_new_tokens must be >= 1 (0 = the checkpoint's eval.max_new_tokens), got {self.max_new_tokens}")
        if p:
            raise ConfigError(p)
        return self


# ------------------------------------------------------------------ the table


@dataclass(frozen=True)
class Command:
    func: Callable[[argparse.Namespace], int]
    config: type | None = RunConfig
    """The command's config dataclass (parsed from flags by draccus); None: the command parses its own arguments."""
    preset: Callable[[], Any] = RunConfig
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    """Adds the arguments of a command that parses its own (``config`` None)."""


COMMANDS: dict[str, Command] = {
    "quickstart": Command(cmd_quickstart, RunCommand, preset=quickstart_config),
    "run": Command(cmd_run, RunCommand),
    "evaluate": Command(cmd_evaluate, EvaluateCommand, EvaluateCommand),
    "data": Command(cmd_data, DataCommand, DataCommand),
    "config": Command(cmd_config),
    "list": Command(cmd_list, ListCommand, ListCommand),
    "tokenizer": Command(cmd_tokenizer, None, add_arguments=_tokenizer_arguments),
    "pretrain": Command(cmd_pretrain, None),
    "report": Command(cmd_report, None, add_arguments=_report_arguments),
    "render": Command(cmd_render, None, add_arguments=_render_arguments),
    "probe": Command(cmd_probe, ProbeOptions, ProbeOptions),
    "import-encoder": Command(cmd_import_encoder, ImportEncoderCommand, ImportEncoderCommand),
    "chat": Command(cmd_chat, ChatCommand, ChatCommand),
    "sweep": Command(cmd_sweep, None, add_arguments=_sweep_arguments),
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
        doc = (command.func.__doc__ or "").strip().split("\n")[0]
        sub.add_parser(name, help=doc, add_help=False, prefix_chars="\0")  # the rest of argv goes to the command
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    split = next((i for i, a in enumerate(argv) if a in COMMANDS), len(argv))
    top = parser.parse_args(argv[:split])
    if split == len(argv):
        parser.print_help()
        return 0
    name, rest = argv[split], argv[split + 1 :]
    setup_logging(top.log_level)
    spec = COMMANDS[name]
    try:
        args = parse_command(name, spec, rest)
        args.argv = argv  # the whole command line, for --nproc's relaunch under torchrun
        return spec.func(args)
    except (ECGBenchError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def parse_command(name: str, spec: Command, argv: list[str]) -> argparse.Namespace:
    """The command's arguments: for a command with a config dataclass, ``--config FILE`` and the flags as dotted
    overrides (strings, converted by ``config.build``); ``--help`` prints the options and exits."""
    from ecg_bench.flags import parse_flags

    args = argparse.Namespace(command=name, preset=spec.preset, config="", overrides={})
    if name == "pretrain":
        from ecg_bench.training.pretrain import parse_pretrain

        args.pretrainer, args.options = parse_pretrain(argv)
        return args
    if spec.config is None:
        p = argparse.ArgumentParser(prog=f"ecg-bench {name}", description=(spec.func.__doc__ or "").strip())
        if spec.add_arguments is not None:
            spec.add_arguments(p)
        return p.parse_args(argv, namespace=args)
    args.config, args.overrides = parse_flags(spec.config, argv, prog=f"ecg-bench {name}",
                                              description=(spec.func.__doc__ or "").strip())  # fmt: skip
    return args


if __name__ == "__main__":
    sys.exit(main())

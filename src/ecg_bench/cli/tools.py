"""``tokenizer``, ``pretrain``, ``report``, ``render``, ``probe``, ``import-encoder``, ``chat`` and ``sweep``."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ecg_bench.config import build
from ecg_bench.errors import ConfigError, ECGBenchError
from ecg_bench.limits import MAX_SWEEP_CELLS


def _command(args, checks=()):
    """The command's config: its preset < ``--config FILE`` < the flags, type- and range-checked."""
    return build(args.preset(), args.config or None, args.overrides, checks=list(checks))


def cmd_tokenizer(args) -> int:
    """ECG-Byte tokenizer: train (BPE on a store sample), verify, encode (store -> ids), import (original pickle)."""
    from ecg_bench.cli.tokenizer import run_tokenizer_command

    return run_tokenizer_command(_command(args, [lambda c: c.problems()]))


def cmd_pretrain(args) -> int:
    """Pretrain an encoder with a registered pretrainer (`ecg-bench pretrain NAME --help` shows NAME's options)."""
    from ecg_bench.training.pretrain import run

    print(run(args.sub, pretrain_options(args)))
    return 0


def pretrain_options(args):
    """The chosen pretrainer's options, checked; ``field(metadata={"required": True})`` makes an option required."""
    opts = _command(args, [lambda o: o.problems()])
    missing = [f"--{f.name}" for f in dataclasses.fields(opts) if f.metadata.get("required") and not getattr(opts, f.name)]
    if missing:
        raise ConfigError([f"pretrain {args.sub}: required: {', '.join(missing)}"])
    return opts


def cmd_report(args) -> int:
    """Benchmark report over finished runs: tables (md, csv, tex), figures and one static index.html."""
    from ecg_bench.evaluation.report import default_out, write_report

    cmd = _command(args, [lambda c: [] if c.runs else ["report needs at least one RUN folder"]])
    out = Path(cmd.out) if cmd.out else default_out(cmd.runs)
    report = write_report(cmd.runs, out, cmd.report)
    print(report.tables["summary"].markdown())
    if "signal_audit" in report.tables:
        print(report.tables["signal_audit"].markdown())
    print(f"report: {report.folder / 'index.html'} ({len(report.configurations)} configurations, {len(report.figures)} figures)")
    return 0


def cmd_render(args) -> int:
    """Draw one segment of a segment store as a 12-lead printout (PNG): --store DIR --index N --out ecg.png."""
    from ecg_bench.representations.image import ImageOptions, render_store_segment

    cmd = _command(args, [lambda c: c.problems()])
    from ecg_bench.representations.image import ImageSettings

    options = ImageOptions(**{f.name: getattr(cmd, f.name) for f in dataclasses.fields(ImageSettings)})
    out = Path(cmd.out)
    if out.exists():
        raise ECGBenchError(f"--out {out} already exists; it is not overwritten: choose another name or remove it")
    image = render_store_segment(cmd.store, cmd.index, options)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, out)
    shown = {k: getattr(options, k) for k in ("layout", "width", "height")}
    print(f"wrote {out} (segment {cmd.index} of {cmd.store}; {shown})")
    return 0


def cmd_probe(args) -> int:
    """Linear probe of a frozen encoder on a store's labels: macro AUROC on patient-disjoint folds, patient-clustered CI."""
    from ecg_bench.evaluation.probe import format_probe, run_probe

    print(format_probe(run_probe(_command(args, [lambda o: o.problems()]))))
    return 0


def cmd_import_encoder(args) -> int:
    """Convert a released encoder checkpoint (ST-MEM's ViT, MERL's ResNet) into an encoder folder with its contract."""
    from ecg_bench.models.encoders.weights import IMPORT_FORMATS

    cmd = _command(args, [lambda c: c.problems()])
    out = IMPORT_FORMATS.get(cmd.format)(cmd.src, cmd.out)
    print(f"{cmd.format} weights from {cmd.src} -> {out} (use it as the encoder's weights folder)")
    return 0


def cmd_chat(args) -> int:
    """Answer questions about one ECG file with a trained checkpoint: a WFDB record (.hea/.dat), a CinC .mat/.hea pair
    (CPSC 2018, CSN), a CODE-15 .hdf5 file with --exam_id, or a .npy/.csv [leads, samples] array with --fs. The ECG
    is preprocessed as the model's segment store was (leads, resampling, segments); a record longer than one
    segment is answered about its FIRST segment unless --segment says another (or all). Without --question,
    questions are read from stdin, one per line, until EOF; each answer sees the earlier ones."""
    from ecg_bench.cli.run import pop_size_factor
    from ecg_bench.inference import chat_answers, read_questions

    pop_size_factor(args)
    cmd: ChatCommand = _command(args)
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

    cmd: SweepCommand = _command(args, [lambda c: c.problems()])
    grid = load_grid(cmd.grid, cmd.output_dir, checks=[config_problems], max_cells=cmd.max_cells)  # all checked first
    print(describe(grid))
    if cmd.dry_run:
        return 0
    outcome = run_sweep(grid, jobs=cmd.jobs, executor=cmd.executor)
    for name, status in outcome.status.items():
        print(f"{status:<11} {name}")
    if outcome.failed:
        print(f"{len(outcome.failed)} of {len(outcome.cells)} cells not finished (errors in {outcome.folder / 'sweep.json'}); "
              f"run the same command again to retry them")  # fmt: skip
    if outcome.report is not None:
        print(f"report: {outcome.report / 'index.html'}")
    elif outcome.report_error:
        print(f"error: no report: {outcome.report_error}", file=sys.stderr)
        return 1
    return 1 if outcome.failed else 0


# ------------------------------------------------------------------ the commands' configs


@dataclass
class ImportEncoderCommand:
    """``ecg-bench import-encoder``."""

    format: str = ""
    """Whose release, a registered import format (`ecg-bench list`): st_mem (bakqui/ST-MEM's encoder or full
    checkpoint), merl (MERL's ResNet-101 ecg_encoder), or a plug-in's."""
    src: str = ""
    """The released .pth (read with torch.load(weights_only=True))."""
    out: str = ""
    """Encoder folder to write (new, empty, or an earlier one of ours)."""

    def problems(self) -> list[str]:
        from ecg_bench.models.encoders.weights import IMPORT_FORMATS

        known = IMPORT_FORMATS.names()
        p = [] if self.format in known else [f"import-encoder --format must be one of {', '.join(known)}, got {self.format!r}"]
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
    model_size_limit_factor: float = 1.0
    """Multiply every model-size limit (docs/limits.md) by this factor (>= 1), for a checkpoint you trust."""

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


@dataclass
class SweepCommand:
    """``ecg-bench sweep GRID``."""

    grid: str = ""
    """Grid file (YAML): preset, base, axes, include, exclude, output_dir, report, slurm (see README, 'Benchmark
    sweeps')."""
    dry_run: bool = False
    """List the cells (checked, with their status) and run none."""
    jobs: int = 1
    """Cells run at a time: locally each with its share of the CPU threads and, with several GPUs, its own GPU; with
    slurm the job array's parallelism."""
    executor: str = "local"
    """How cells run (a registered launcher): local = subprocesses on this machine; slurm = a SLURM job array through
    submitit (the grid's slurm: parameters); submitit_local = submitit's LocalExecutor here."""
    output_dir: str = ""
    """Sweep folder (default: the grid's output_dir)."""
    max_cells: int = MAX_SWEEP_CELLS
    """Most cells the grid may make (each is a whole run; limits.MAX_SWEEP_CELLS); raising it risks days of compute and
    a disk filled with run folders from one mistyped axis."""

    def problems(self) -> list[str]:
        from ecg_bench.sweep import LAUNCHERS

        p = [] if self.grid else ["sweep needs a GRID file (ecg-bench sweep GRID.yaml)"]
        if self.jobs < 1:
            p.append(f"sweep --jobs must be >= 1, got {self.jobs}")
        if self.executor not in LAUNCHERS:
            p.append(f"sweep --executor must be one of {', '.join(LAUNCHERS.names())}, got {self.executor!r}")
        return p

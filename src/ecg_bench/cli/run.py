"""``quickstart``, ``run``, ``evaluate``, ``data`` and ``config``: the commands over a run config."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_bench.config import DataConfig, EvalConfig, RunConfig, build
from ecg_bench.errors import ConfigError, ECGBenchError


def quickstart_config() -> RunConfig:
    """The embedded default: synthetic ECGs and questions, offline, a few minutes on 2 CPU cores."""
    from ecg_bench.presets import quickstart

    return quickstart()


def _load_config(args) -> RunConfig:
    """The command's preset < ``--config FILE`` (layered over it, section by section) < flags, decoded by draccus and
    checked, component options and the LLM included: one ConfigError lists every problem."""
    from ecg_bench.pipeline import config_problems

    return build(args.preset(), args.config or None, args.overrides, checks=[config_problems])


def cmd_quickstart(args) -> int:
    """Synthetic ECGs -> QA -> folds -> train an ELM -> evaluate with real, zeroed and no signal."""
    from ecg_bench.pipeline import run

    nproc = _pop_nproc(args)
    pop_size_factor(args)
    cfg = _load_config(args)
    if nproc > 1 and "LOCAL_RANK" not in os.environ:
        return launch_torchrun(args, cfg, nproc)
    results = run(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun: one table, rank 0's
        _print_results(results, cfg)
    return 0


def cmd_run(args) -> int:
    """Train and evaluate as configured (a recipe YAML with --config, plus overrides)."""
    return cmd_quickstart(args)


def _pop_nproc(args) -> int:
    """The command's ``nproc`` (taken out of the overrides: it is how this invocation is launched, not a run setting),
    range-checked before any work."""
    nproc = args.overrides.pop("nproc", 1)
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ConfigError([f"nproc must be an integer >= 1 (processes on this machine, one per GPU), got {nproc!r}"])
    return nproc


def pop_size_factor(args) -> None:
    """``--model_size_limit_factor N`` (taken out of the overrides): multiply the model-size limits (``limits``)."""
    from ecg_bench import limits

    factor = args.overrides.pop("model_size_limit_factor", None)
    if factor is not None:
        limits.set_model_size_factor(factor)


def launch_torchrun(args, cfg: RunConfig, nproc: int) -> int:
    """Start this very command again (``python -m ecg_bench <the same argv>`` without ``--nproc``) as ``nproc``
    processes with torchrun (torch.distributed.run) on this machine, and wait for them; the exit status is the worst
    of theirs. ``cfg`` is the command's checked config: a strategy that cannot run on ``nproc`` processes is refused
    here, once, before any process starts."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    from ecg_bench import processes
    from ecg_bench.training.distributed import resolve_strategy

    resolve_strategy(cfg.train.strategy, nproc)  # e.g. single on 2 processes: refused here, once
    rest = _without_nproc(args.argv)
    targs = get_args_parser().parse_args(["--standalone", "--nproc-per-node", str(nproc), "--module", "ecg_bench", *rest])
    with processes.launcher():  # the ranks die with this process (rank 0 holds the output folder: run_lock)
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


def cmd_evaluate(args) -> int:
    """Evaluate a checkpoint folder (its config.json, plus overrides) under the evaluation conditions, into a new
    folder (<checkpoint>/eval-<time>, or --output_dir if new or empty); the training run's files are never rewritten."""
    from ecg_bench.inference import evaluation_defaults, evaluation_store
    from ecg_bench.pipeline import config_problems, run
    from ecg_bench.training.manifest import verify_checkpoint

    checkpoint = args.overrides.pop("checkpoint", "") or ""
    if not checkpoint:
        raise ECGBenchError("evaluate needs --checkpoint DIR (a folder written by train/run/quickstart)")
    nproc = _pop_nproc(args)
    pop_size_factor(args)
    verify_checkpoint(checkpoint)  # whole, as its manifest lists it, before anything is read or made
    trained = RunConfig.load(args.config or str(Path(checkpoint) / "config.json"))
    given = set(args.overrides)
    for key, value in evaluation_defaults(trained, checkpoint).items():
        args.overrides.setdefault(key, value)
    cfg = build(trained, None, args.overrides, checks=[config_problems])
    if nproc > 1 and "LOCAL_RANK" not in os.environ:  # every process evaluates into the one folder chosen here
        args.argv += [] if "output_dir" in given else ["--output_dir", cfg.output_dir]
        return launch_torchrun(args, cfg, nproc)
    if "data.store_dir" not in given:
        cfg.data.store_dir = evaluation_store(cfg, trained, checkpoint)
    cfg.train.resume_from = checkpoint
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


def _print_results(results: dict[str, Any], cfg: RunConfig) -> None:
    from ecg_bench.pipeline import results_table

    print(results_table(results))
    print("values in %, [95 % CI] from a bootstrap resampling patients (n = answers scored)")
    print(f"results: {cfg.output_dir}/results.json  ({results['seconds']:.0f} s)")


# ------------------------------------------------------------------ the commands' configs


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
    model_size_limit_factor: float = 1.0
    """Multiply every model-size limit (docs/limits.md) by this factor (>= 1), for a checkpoint config you trust:
    the model allocates its weights from these sizes before anything else is checked. Not saved in config.json."""


@dataclass
class EvaluateTrainOptions:
    """The training settings evaluation uses (the others are the checkpoint's and unused)."""

    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (cuda when available)."""
    precision: str = "auto"
    """fp32, bf16, or auto (bf16 on a CUDA device that supports it, else fp32)."""
    num_threads: int = 0
    """torch CPU threads (0 = leave torch's default)."""
    strategy: str = "auto"
    """How several processes (--nproc) run the model: single, ddp, fsdp or auto (ddp with several processes)."""


@dataclass
class EvaluateCommand:
    """``ecg-bench evaluate``: a checkpoint, and what may differ from the run that trained it."""

    checkpoint: str = ""
    """Checkpoint folder to evaluate (its config.json is the base config)."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data settings (default: the training run's)."""
    train: EvaluateTrainOptions = field(default_factory=EvaluateTrainOptions)
    """Device, precision, threads and strategy (default: the training run's)."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Evaluation settings (default: the training run's)."""
    output_dir: str = ""
    """Folder for results.json (default: <checkpoint>/eval-<time>); must be new or empty."""
    nproc: int = 1
    """Processes on this machine (one per GPU): >1 starts torchrun --nproc-per-node N, each process generating a
    share of the answers into the one output folder chosen before launching. Not saved in config.json."""
    model_size_limit_factor: float = 1.0
    """Multiply every model-size limit (docs/limits.md) by this factor (>= 1), for a checkpoint config you trust:
    the model allocates its weights from these sizes before anything else is checked. Not saved in config.json."""

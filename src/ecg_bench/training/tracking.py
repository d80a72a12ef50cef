"""What a run records about itself: per-step metrics (``metrics.jsonl``), optional trackers (TensorBoard,
Weights & Biases, MLflow, as transformers' ``report_to``), and the versions of the code that ran.

``metrics.jsonl`` holds one JSON object per optimizer step, in the run folder, whatever ``train.report_to``::

    {"step": 12, "loss": 1.93, "lr": 0.0002, "lr_new": 0.001, "grad_norm": 0.84, "tokens": 1830,
     "label_tokens": 96, "tokens_per_s": 4120.5, "step_s": 0.44, "elapsed_s": 5.3, "epoch": 0.4,
     "rss_gb": 1.21, "val_loss": 1.88, "val_tokens": 412}

``loss`` is the step's mean token loss over its assistant (label) tokens; ``lr`` the LLM's learning rate and
``lr_new`` that of the new weights (encoder, projector, ECG embeddings) when they form their own group;
``tokens`` the real (non-padding) tokens of the step's batches and ``label_tokens`` those scored;
``tokens_per_s`` = tokens / ``step_s`` (the step's wall time); memory is ``cuda_gb`` (peak allocated on the
device during the step) on CUDA, else ``rss_gb`` (the process's peak resident memory so far, where the OS
reports it); ``val_loss`` / ``val_tokens`` appear on the steps where the validation loss was computed
(``train.eval_every``). A resumed run first drops the lines past its checkpoint's step (written after that
checkpoint by the interrupted run), so every step appears once.

The trainer calls ``Tracker.log_step`` once per step: no tracker code lives in the training loop.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ecg_bench.config import flat_dict
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

METRICS_FILE = "metrics.jsonl"
LOG_FILE = "run.log"
BACKEND_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
"""report_to name -> the module it needs (installed with ``pip install 'ecg-bench[tracking]'``)."""
LIBRARIES = ("torch", "transformers", "peft", "tokenizers", "safetensors", "numpy", "scipy")
"""Libraries whose versions results.json records."""


def report_to_problems(names: list[str]) -> list[str]:
    """One problem per tracker in ``names`` whose package is not installed (checked before any work)."""
    return [
        f"train.report_to {n}: the {BACKEND_MODULES[n]} package is not installed (pip install 'ecg-bench[tracking]')"
        for n in names
        if n in BACKEND_MODULES and importlib.util.find_spec(BACKEND_MODULES[n]) is None
    ]


# ------------------------------------------------------------------ metrics.jsonl


class MetricsFile:
    """``metrics.jsonl`` of a run, opened to continue after step ``start_step``: lines of later steps (an
    interrupted run's, past its last checkpoint) are dropped first, so a resumed run never repeats a step."""

    def __init__(self, path: str | Path, start_step: int = 0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = self._lines_up_to(start_step)
        if self.path.exists():
            tmp = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
            tmp.write_text("".join(kept))
            os.replace(tmp, self.path)
            dropped = self._count - len(kept)
            if dropped:
                log.info("%s: dropped %d step(s) after step %d, written after the checkpoint this run resumes from",
                         self.path, dropped, start_step)  # fmt: skip
        self._file = open(self.path, "a", encoding="utf-8")

    def _lines_up_to(self, step: int) -> list[str]:
        self._count = 0
        if not self.path.is_file():
            return []
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            try:
                rec = json.loads(line)
            except ValueError:  # a line cut by a kill mid-write
                continue
            self._count += 1
            if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= step:
                kept.append(line if line.endswith("\n") else line + "\n")
        return kept

    def write(self, record: Mapping[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()  # a reader (a plot, tail -f) sees each step as it ends

    def close(self) -> None:
        self._file.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a ``metrics.jsonl`` (for plots and tests); a cut last line is skipped."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


# ------------------------------------------------------------------ trackers


class _Backend:
    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TensorBoardBackend(_Backend):
    """Event files in ``<run>/tensorboard`` (torch's SummaryWriter); a resumed run writes new files to the
    same folder and TensorBoard shows one curve."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any], start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None)
        if not start_step:
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", 0)

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(_tag(k), v, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbBackend(_Backend):
    """A Weights & Biases run in ``<run>/wandb``: offline unless ``WANDB_MODE`` says otherwise (``wandb sync``
    uploads it later); its id is kept in ``<run>/wandb_run_id`` so a resumed run continues the same one."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any], start_step: int):
        import wandb

        id_file = run_dir / "wandb_run_id"
        run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
        id_file.write_text(run_id + "\n")
        (run_dir / "wandb").mkdir(exist_ok=True)
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "ecg-bench"), dir=str(run_dir), id=run_id, resume="allow",
            mode=os.environ.get("WANDB_MODE", "offline"), config=dict(config), name=run_dir.name,
        )  # fmt: skip

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log({_tag(k): v for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        self.run.finish()


class MlflowBackend(_Backend):
    """An MLflow run: ``MLFLOW_TRACKING_URI`` if set, else the file store ``<run>/mlruns``; experiment
    ``MLFLOW_EXPERIMENT_NAME`` or ecg-bench; its id is kept in ``<run>/mlflow_run_id`` for resuming."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any], start_step: int):
        import mlflow

        self.mlflow = mlflow
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # a local store needing no server nor database package (mlflow-skinny has no SQLAlchemy);
            # MLflow 3 keeps the file store in maintenance mode and asks for this opt-in to use it
            uri = (run_dir / "mlruns").resolve().as_uri()
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "ecg-bench"))
        id_file = run_dir / "mlflow_run_id"
        if id_file.is_file():
            self.run = mlflow.start_run(run_id=id_file.read_text().strip())
        else:
            self.run = mlflow.start_run(run_name=run_dir.name)
            id_file.write_text(self.run.info.run_id + "\n")
            mlflow.log_params({k: str(v)[:500] for k, v in flat_dict(config).items()})  # MLflow caps values at 500 chars

    def log(self, step: int, metrics: Mapping[str, float]) -> None:
        self.mlflow.log_metrics({_tag(k).replace("/", "_"): float(v) for k, v in metrics.items()}, step=step)

    def close(self) -> None:
        self.mlflow.end_run()


BACKENDS = {"tensorboard": TensorBoardBackend, "wandb": WandbBackend, "mlflow": MlflowBackend}


def _tag(key: str) -> str:
    return key.replace("val_", "val/") if key.startswith("val_") else f"train/{key}"


class Tracker:
    """Writes each step's metrics to ``metrics.jsonl`` and to every tracker in ``report_to``."""

    def __init__(self, run_dir: str | Path, report_to: list[str], config: Mapping[str, Any], start_step: int = 0):
        self.run_dir = Path(run_dir)
        self.metrics = MetricsFile(self.run_dir / METRICS_FILE, start_step)
        self.backends: list[_Backend] = []
        for name in report_to:
            if name in BACKENDS:
                self.backends.append(BACKENDS[name](self.run_dir, config, start_step))
                log.info("reporting training metrics to %s", name)

    def log_step(self, record: Mapping[str, Any]) -> None:
        """One step's record (``step`` plus metrics, see the module doc)."""
        self.metrics.write(record)
        scalars = {k: v for k, v in record.items() if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)}
        for b in self.backends:
            b.log(int(record["step"]), scalars)

    def close(self) -> None:
        self.metrics.close()
        for b in self.backends:
            try:
                b.close()
            except Exception as e:  # a tracker failing to flush must not lose the run's own results
                log.warning("closing the %s tracker failed: %s", type(b).__name__, e)


def peak_memory_gb(device: Any) -> dict[str, float]:
    """Peak memory where it is known: the CUDA device's peak allocation since the last reset (reset here),
    else the process's peak resident set size (Linux / macOS ``getrusage``)."""
    import torch

    if getattr(device, "type", "") == "cuda":
        gb = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
        return {"cuda_gb": round(gb, 3)}
    try:
        import resource
    except ImportError:  # Windows
        return {}
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rss_gb": round(rss / (2**30 if sys.platform == "darwin" else 2**20), 3)}  # bytes on macOS, KiB on Linux


# ------------------------------------------------------------------ provenance


def git_commit(path: str | Path | None = None) -> dict[str, Any] | None:
    """``{"commit": sha, "dirty": bool}`` of the git checkout holding ``path`` (default: this package's source),
    or None when it is not in one (an installed wheel) or git is missing."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        status = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": sha.stdout.strip(), "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None}


def package_version() -> str:
    try:
        return version("ecg-bench")
    except PackageNotFoundError:
        from ecg_bench._version import __version__

        return __version__


def provenance() -> dict[str, Any]:
    """The code that ran: ecg-bench's version, its git commit when run from a checkout, library versions."""
    libs = {}
    for name in LIBRARIES:
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            libs[name] = None
    return {"ecg_bench": package_version(), "git": git_commit(), "libraries": libs}

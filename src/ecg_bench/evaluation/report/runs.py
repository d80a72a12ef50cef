"""Finding finished runs (folders holding results.json) and grouping them into configurations.

A configuration is every run whose config is the same except the fold, the training seed and the
settings that change where or how fast a run works, never what it computes (``NOT_CONFIGURATION``).
Each configuration is named by the config fields whose values differ between configurations.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_bench.config import flat_dict
from ecg_bench.errors import DataError
from ecg_bench.evaluation.results_file import RESULTS, read_results
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

FOLD_KEY, SEED_KEY = "data.fold", "train.seed"
NOT_CONFIGURATION = (
    "output_dir", FOLD_KEY, SEED_KEY, "data.workers", "data.rebuild", "data.store_dir", "data.export_hf",
    "data.export_hf_signals", "data.translation_cache", "train.device", "train.num_threads", "train.log_every",
    "train.save_every", "eval.batch_size", "eval.nltk_data", "eval.conditions", "eval.bootstrap_resamples",
    "data.source.translation_cache",
)  # fmt: skip
"""Flattened config keys that never split runs into different configurations (``train.resume_from`` too
for a run that trained: it only says where training continued from). The conditions a run was evaluated
under (``eval.conditions``) are rows of its configuration, not another
configuration."""


@dataclass
class Run:
    """One finished run: its folder, flattened config and results.json."""

    path: Path
    config: dict[str, Any]
    """The run config flattened to dotted keys (``model.encoder`` -> value; nested options too)."""
    results: dict[str, Any]

    @property
    def fold(self) -> Any:
        return self.config.get(FOLD_KEY)

    @property
    def seed(self) -> Any:
        return self.config.get(SEED_KEY)

    @property
    def conditions(self) -> dict[str, Any]:
        return self.results["conditions"]

    def samples(self, condition: str) -> list[dict[str, Any]]:
        return [s for s in self.results.get("samples", []) if s.get("condition") == condition]

    @property
    def label(self) -> str:
        return f"fold {self.fold}, seed {self.seed}"

    def locate(self, recorded: str | None) -> Path | None:
        """A path results.json records (the store, the checkpoint), found again: as written when absolute or when
        it exists from here, else against the run folder and each folder above it (a relative path was relative to
        the folder the run was started in, which holds its output_dir). None when not found."""
        if not recorded:
            return None
        p = Path(recorded)
        if p.is_absolute() or p.exists():
            return p if p.exists() else None
        return next((base / p for base in (self.path, *self.path.parents) if (base / p).exists()), None)


@dataclass
class Configuration:
    """Runs that differ only in fold and seed."""

    name: str
    settings: dict[str, Any]
    """The config fields that tell this configuration from the others (empty when there is one)."""
    runs: list[Run] = field(default_factory=list)

    @property
    def conditions(self) -> list[str]:
        return list(dict.fromkeys(c for r in self.runs for c in r.conditions))

    def by_fold(self) -> dict[Any, list[Run]]:
        out: dict[Any, list[Run]] = {}
        for r in sorted(self.runs, key=lambda r: (str(r.fold), str(r.seed))):
            out.setdefault(r.fold, []).append(r)
        return out


def find_results(paths: Iterable[str | Path]) -> list[Path]:
    """results.json files: a RUN given is a run folder, a results.json, or a folder searched for them."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name == RESULTS:
            found.append(p)
        elif (p / RESULTS).is_file():
            found.append(p / RESULTS)
        elif p.is_dir():
            hits = sorted(p.rglob(RESULTS))
            if not hits:
                raise DataError(f"{p}: no {RESULTS} in it or below it; expected finished run folders (ecg-bench run)")
            found.extend(hits)
        else:
            raise DataError(f"{p}: not found; expected a run folder holding {RESULTS}, or a folder of runs")
    unique = list(dict.fromkeys(f.resolve() for f in found))
    return unique


def load_run(path: Path) -> Run:
    """A run from its results.json (``results_file.read_results``: bounded, of this format version), checked for what
    the report reads (config, conditions, samples); a null or non-numeric score is dropped as missing, with a warning
    naming the run, the condition and the metric."""
    results = read_results(path)
    for name, cond in results["conditions"].items():
        if not isinstance(cond, dict) or not isinstance(cond.get("metrics"), dict):
            raise DataError(f"{path}: condition {name!r} has no metrics object")
    if not isinstance(results.get("samples", []), list) or not all(isinstance(s, dict) for s in results.get("samples", [])):
        raise DataError(f"{path}: samples is not a list of objects")
    _drop_missing(results, path)
    config = flat_dict(results["config"])
    if results.get("training"):
        config.pop("train.resume_from", None)
    return Run(path.parent, config, results)


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _drop_missing(results: dict[str, Any], path: Path) -> None:
    """Remove every score that is not a finite number (null: not defined for that run) from the condition blocks and
    the per-sample rows, so that it counts as missing, never as a number; warn once per (condition, metric)."""
    missing: dict[tuple[str, str], int] = {}
    keys = set()
    for name, cond in results["conditions"].items():
        groups = [g for key in ("per_type", "per_topic") if isinstance(cond.get(key), dict) for g in cond[key].values()]
        for block in (cond, *groups):
            metrics = block.get("metrics") if isinstance(block, dict) else None
            if not isinstance(metrics, dict):
                continue
            keys.update(metrics)
            for k in [k for k, v in metrics.items() if not _finite(v)]:
                del metrics[k]
                missing[(name, k)] = missing.get((name, k), 0) + 1
            ci = block.get("ci95")
            if isinstance(ci, dict):
                for k in [k for k, v in ci.items() if not (isinstance(v, list) and len(v) >= 2 and all(map(_finite, v[:2])))]:
                    del ci[k]
    for s in results.get("samples", []):
        for k in [k for k in keys if k in s and not _finite(s[k])]:
            del s[k]
            missing[(str(s.get("condition")), k)] = missing.get((str(s.get("condition")), k), 0) + 1
    for (cond, k), n in sorted(missing.items()):
        log.warning("report: %s: condition %r has %d value(s) of %s that are not numbers (null or missing in "
                    "results.json): reported as missing", path, cond, n, k)  # fmt: skip


def _key(run: Run, ignore: Sequence[str]) -> str:
    skip = set(NOT_CONFIGURATION) | set(ignore)
    return json.dumps({k: v for k, v in run.config.items() if k not in skip}, sort_keys=True, default=str)


def _show(value: Any) -> str:
    if isinstance(value, list):
        return "+".join(map(str, value))
    return str(value)


def group_runs(runs: Sequence[Run], ignore: Sequence[str] = ()) -> list[Configuration]:
    """Configurations in order of first appearance, each named by the fields that differ between them."""
    groups: dict[str, list[Run]] = {}
    for r in runs:
        groups.setdefault(_key(r, ignore), []).append(r)
    keys = list(groups)
    configs = [json.loads(k) for k in keys]
    all_keys = list(dict.fromkeys(k for c in configs for k in c))
    differing = [k for k in all_keys if len({json.dumps(c.get(k), default=str) for c in configs}) > 1]
    out = []
    for key, cfg in zip(keys, configs):
        settings = {k: cfg.get(k) for k in differing}
        if settings:
            short = _short_names(differing)
            name = ", ".join(f"{short[k]}={_show(v)}" for k, v in settings.items())
        else:
            name = " / ".join(_show(cfg[k]) for k in ("model.elm", "model.encoder", "model.llm") if k in cfg) or "all runs"
        out.append(Configuration(name, settings, groups[key]))
    names = [c.name for c in out]
    for c in out:
        if names.count(c.name) > 1:  # should not happen; keep names unique all the same
            c.name = f"{c.name} #{names.index(c.name)}"
    for c in out:
        seen = [(r.fold, r.seed) for r in c.runs]
        if len(set(seen)) < len(seen):
            log.warning("configuration %s has several runs with the same fold and seed: %s", c.name,
                        ", ".join(str(r.path) for r in c.runs))  # fmt: skip
    return out


def _short_names(keys: Sequence[str]) -> dict[str, str]:
    """The last part of each dotted key (a component's choice ``model.encoder.type`` as ``encoder``), or the whole
    key when two keys share it."""
    last = [k.rsplit(".", 2)[-2] if k.endswith(".type") and k.count(".") >= 2 else k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}

"""Finding finished runs (folders holding results.json) and grouping them into configurations.

A configuration is every run whose config is the same except the fold, the training seed and the
settings that change where or how fast a run works, never what it computes (``NOT_CONFIGURATION``).
Each configuration is named by the config fields whose values differ between configurations.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ecg_bench.config import flat_dict
from ecg_bench.errors import DataError
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

RESULTS = "results.json"
FOLD_KEY, SEED_KEY = "data.fold", "train.seed"
NOT_CONFIGURATION = (
    "output_dir", FOLD_KEY, SEED_KEY, "data.workers", "data.rebuild", "data.store_dir", "data.export_hf",
    "data.export_hf_signals", "data.translation_cache", "train.device", "train.num_threads", "train.log_every",
    "train.save_every", "eval.batch_size", "eval.nltk_data", "eval.ablations", "eval.conditions", "eval.bootstrap_resamples",
    "data.source.translation_cache",
)  # fmt: skip
"""Flattened config keys that never split runs into different configurations (``train.resume_from`` too
for a run that trained: it only says where training continued from). The conditions a run was evaluated
under (``eval.conditions``; ``eval.ablations`` in older runs) are rows of its configuration, not another
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
    """A run from its results.json, checked for what the report reads (config, conditions, samples)."""
    try:
        results = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not readable as JSON ({e}); expected the results.json of a finished run") from None
    if not isinstance(results, dict):
        raise DataError(f"{path}: expected a JSON object with config, conditions and samples, got {type(results).__name__}")
    missing = [k for k in ("config", "conditions") if not isinstance(results.get(k), dict)]
    if missing:
        raise DataError(f"{path}: no {' or '.join(missing)} object; expected the results.json written by ecg-bench run")
    for name, cond in results["conditions"].items():
        if not isinstance(cond, dict) or not isinstance(cond.get("metrics"), dict):
            raise DataError(f"{path}: condition {name!r} has no metrics object")
    if not isinstance(results.get("samples", []), list):
        raise DataError(f"{path}: samples is not a list")
    config = flat_dict(results["config"])
    if results.get("training"):
        config.pop("train.resume_from", None)
    return Run(path.parent, config, results)


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

"""Every recipe loads into a valid RunConfig and names its own launch command (the sweep grids of recipes/bench/:
tests/test_sweep.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ecg_bench.config import RunConfig
from ecg_bench.data.mapped.base import MAPPED
from ecg_bench.data.sources.base import SOURCES
from ecg_bench.models.elm import ELMS
from ecg_bench.models.encoders import ENCODERS
from ecg_bench.representations.base import REPRESENTATIONS

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if "bench" not in p.relative_to(ROOT / "recipes").parts)
"""Run configs; the grids of recipes/bench/ are sweeps, loaded as grids by tests/test_sweep.py."""


def test_there_are_recipes():
    assert len(RECIPES) >= 4


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_loads_and_names_its_command(path):
    cfg = RunConfig.load(path).validate()
    from ecg_bench.pipeline import config_problems

    assert config_problems(cfg) == []
    rel = path.relative_to(ROOT).as_posix()
    assert f"ecg-bench run --config {rel}" in path.read_text() or f"ecg-bench quickstart --config {rel}" in path.read_text()
    for reg, name in ((SOURCES, cfg.data.source), (MAPPED, cfg.data.mapped), (ELMS, cfg.model.elm),
                      (ENCODERS, cfg.model.encoder), (REPRESENTATIONS, cfg.model.representation)):  # fmt: skip
        reg.get(name.type)

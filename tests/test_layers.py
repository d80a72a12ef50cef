"""The layer contract ([tool.importlinter] in pyproject.toml) holds; .ci/run also runs `lint-imports` before pytest."""

from __future__ import annotations

from pathlib import Path

import ecg_bench

ROOT = Path(__file__).resolve().parents[1]


def test_layer_contract_holds(monkeypatch):
    from importlinter.cli import lint_imports

    # the contract must be checked on this checkout's package, not another install
    assert Path(ecg_bench.__file__).resolve().is_relative_to(ROOT)
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True) == 0, (
        "layer contract broken: run `lint-imports` for the imports to remove"
    )

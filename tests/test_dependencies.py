"""Every third-party module the code imports is declared in pyproject.toml.

src/ may use anything declared in ``dependencies`` or an extra; tests/ only what ``pip install -e '.[test]'`` brings
(core + the ``test`` extra). Imports inside functions count too: they fail just as hard at run time.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
OWN = {"ecg_bench"}


def _normalise(name: str) -> str:
    """PEP 503 normalised distribution name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(req: str) -> str:
    m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
    assert m, f"pyproject.toml: cannot read requirement {req!r}"
    return _normalise(m.group(1))


def _declared() -> tuple[set[str], dict[str, set[str]]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {_requirement_name(r) for r in project.get("dependencies", [])}
    extras = {k: {_requirement_name(r) for r in v} for k, v in project.get("optional-dependencies", {}).items()}
    return core, extras


def imported_modules(folder: Path) -> dict[str, set[str]]:
    """Top-level names of every absolute import in every .py file under ``folder`` -> files importing them."""
    found: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):  # walks function bodies too
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], set()).add(path.relative_to(ROOT).as_posix())
    return found


def _local_modules(folder: Path) -> set[str]:
    """Modules a folder provides itself (test helpers such as ``elm_fixtures``, ``conftest``)."""
    return {p.stem for p in folder.rglob("*.py")} | {p.name for p in folder.rglob("*") if p.is_dir()}


def third_party(folder: Path, local: set[str] = frozenset()) -> dict[str, set[str]]:
    """Third-party modules imported under ``folder`` -> the files importing them (stdlib, own, ``local`` removed)."""
    skip = set(sys.stdlib_module_names) | OWN | set(local) | {"__future__"}
    return {m: files for m, files in imported_modules(folder).items() if m not in skip}


PROVIDERS = {"mlflow": ["mlflow-skinny", "mlflow"]}
"""Modules whose distribution has another name, for when none is installed (optional extras in a fresh venv)."""


def distributions(module: str) -> set[str]:
    """The distributions that provide a top-level module (PROVIDERS, or its own name, when none installed does)."""
    dists = importlib.metadata.packages_distributions().get(module) or PROVIDERS.get(module) or [module]
    return {_normalise(d) for d in dists}


def _undeclared(folder: Path, allowed: set[str], local: set[str] = frozenset()) -> list[str]:
    return [
        f"{module} (distribution {' or '.join(sorted(distributions(module)))}) imported by {', '.join(sorted(files))}"
        for module, files in sorted(third_party(folder, local).items())
        if not distributions(module) & allowed
    ]


def test_the_scan_sees_imports_inside_functions():
    modules = third_party(ROOT / "src")
    assert "h5py" in modules  # imported inside a function of signals/io.py
    assert "torch" in modules and "os" not in modules and "ecg_bench" not in modules
    assert "elm_fixtures" not in third_party(ROOT / "tests", _local_modules(ROOT / "tests"))


def test_src_imports_are_declared():
    core, extras = _declared()
    allowed = core.union(*extras.values())
    missing = _undeclared(ROOT / "src", allowed)
    assert not missing, "imported under src/ but declared in no pyproject.toml dependency list:\n" + "\n".join(missing)


def test_test_imports_are_declared_for_the_test_install():
    core, extras = _declared()
    assert "test" in extras, "pyproject.toml has no `test` extra"
    missing = _undeclared(ROOT / "tests", core | extras["test"], _local_modules(ROOT / "tests"))
    assert not missing, "imported under tests/ but not installed by `pip install -e '.[test]'`:\n" + "\n".join(missing)

"""Must hold: a component is one file. A distribution installed outside the source tree adds an encoder, a
condition and a source through entry points (``tests/plugin_example``), and ``ecg-bench list`` and a tiny run use
them; an encoder (or condition) file dropped into its package is found with no list edited. The config package imports
no component and no torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ecg_bench
from ecg_bench.errors import UnknownNameError
from ecg_bench.registry import PluginError, Registry, _REGISTRIES

EXAMPLE = Path(__file__).parent / "plugin_example"
SRC = Path(ecg_bench.__file__).resolve().parents[1]
ENTRY_POINTS = {
    "ecg_bench.encoders": {"demo_gru": "ecg_bench_demo_plugin.gru_encoder"},
    "ecg_bench.conditions": {"demo_flipped": "ecg_bench_demo_plugin.flipped_condition"},
    "ecg_bench.sources": {"demo_synthetic": "ecg_bench_demo_plugin.synthetic_source"},
}


def install(site: Path, name: str, entry_points: dict[str, dict[str, str]], package: Path | None = None) -> Path:
    """What ``pip install`` leaves in site-packages: the package and a dist-info folder with METADATA and
    entry_points.txt."""
    site.mkdir(parents=True, exist_ok=True)
    if package is not None:
        shutil.copytree(package, site / package.name, ignore=shutil.ignore_patterns("__pycache__"))
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n" for group, eps in entry_points.items())
    )
    return site


def ecg_bench_cmd() -> list[str]:
    script = Path(sys.executable).with_name("ecg-bench")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ecg_bench"]


def run(args: list[str], pythonpath: list[Path], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, pythonpath)), "HF_HUB_OFFLINE": "1"}
    return subprocess.run(args, capture_output=True, text=True, env=env, cwd=cwd, timeout=900)


def test_an_installed_distribution_adds_an_encoder_a_condition_and_a_source(tmp_path):
    from ecg_bench.presets import tiny

    site = install(tmp_path / "site", "ecg-bench-demo-plugin", ENTRY_POINTS, EXAMPLE / "ecg_bench_demo_plugin")
    path = [site, SRC]

    listed = run([*ecg_bench_cmd(), "list"], path, tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = dict(line.split(": ", 1) for line in listed.stdout.splitlines() if ": " in line)
    assert "demo_gru" in lines["encoders"].split(", ") and "conv1d" in lines["encoders"].split(", ")
    assert "demo_flipped" in lines["conditions"].split(", ") and "demo_synthetic" in lines["sources"].split(", ")
    details = run([*ecg_bench_cmd(), "list", "--details", "encoders"], path, tmp_path)
    assert "demo_gru: A one-layer GRU" in details.stdout and "hidden (int, default 32): GRU hidden size." in details.stdout

    cfg = tiny(str(tmp_path / "run")).to_dict()
    cfg["data"]["source"] = {"type": "demo_synthetic", "num_patients": 12, "records_per_patient": 1, "gain": 3.0}
    cfg["model"]["encoder"] = {"type": "demo_gru", "dim": 32, "num_tokens": 2, "hidden": 16}
    cfg["train"]["max_steps"], cfg["train"]["num_threads"] = 2, 1
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    done = run([*ecg_bench_cmd(), "run", "--config", str(tmp_path / "cfg.json"), "--eval.conditions", "real", "demo_flipped"],
               path, tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"]["source"] == {"type": "demo_synthetic", "num_patients": 12, "records_per_patient": 1, "gain": 3.0}
    assert saved["model"]["encoder"]["type"] == "demo_gru" and saved["model"]["encoder"]["hidden"] == 16
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert set(results["conditions"]) == {"real", "demo_flipped"}
    assert all(c["clusters"] > 0 and c["metrics"] for c in results["conditions"].values())

    # without the distribution on the path the names are unknown, listing the valid ones
    gone = run([*ecg_bench_cmd(), "run", "--config", str(tmp_path / "cfg.json")], [SRC], tmp_path)
    assert gone.returncode == 2 and "unknown source 'demo_synthetic'" in gone.stderr and "synthetic" in gone.stderr


def test_a_component_file_dropped_into_its_package_is_found(tmp_path):
    """A copy of the package (the checkout is never touched) with one new file in models/encoders/ and one in
    evaluation/conditions/."""
    src = tmp_path / "src"
    shutil.copytree(SRC / "ecg_bench", src / "ecg_bench", ignore=shutil.ignore_patterns("__pycache__"))
    text = (EXAMPLE / "ecg_bench_demo_plugin" / "gru_encoder.py").read_text().replace('"demo_gru"', '"dropped_gru"')
    (src / "ecg_bench" / "models" / "encoders" / "gru.py").write_text(text)
    text = (EXAMPLE / "ecg_bench_demo_plugin" / "flipped_condition.py").read_text().replace('"demo_flipped"', '"dropped_flipped"')
    (src / "ecg_bench" / "evaluation" / "conditions" / "flipped.py").write_text(text)
    code = (
        "import numpy as np, torch\n"
        "from ecg_bench.config import EncoderOptions, choice\n"
        "from ecg_bench.evaluation.conditions import CONDITIONS, build_condition\n"
        "from ecg_bench.models.encoders import ENCODERS, build_encoder\n"
        "from ecg_bench.models.encoders.base import encoder_spec\n"
        "opts = choice(EncoderOptions, 'dropped_gru', dim=8, num_tokens=3)\n"
        "enc = build_encoder(opts, encoder_spec(opts, 12, 500, 250.0))\n"
        "x = np.ones((1, 12, 500), dtype=np.float32)\n"
        "flipped = build_condition('dropped_flipped').signals(0, lambda i: x)\n"
        "print(ENCODERS.get('dropped_gru').__module__, tuple(enc(torch.randn(2, 12, 500)).shape),\n"
        "      CONDITIONS.get('dropped_flipped').__module__, float(flipped.sum()))\n"
    )
    out = run([sys.executable, "-c", code], [src], tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ecg_bench.models.encoders.gru", "(2,", "3,", "8)", "ecg_bench.evaluation.conditions.flipped",
                                  "-6000.0"]  # fmt: skip
    listed = run([*ecg_bench_cmd(), "list"], [src], tmp_path)
    assert "dropped_gru" in listed.stdout and "dropped_flipped" in listed.stdout
    assert "dropped_gru" not in run([*ecg_bench_cmd(), "list"], [SRC], tmp_path).stdout  # the checkout has no such file


def test_the_config_package_imports_no_component_and_no_torch():
    code = ("import sys\nimport ecg_bench.config as c\nd = c.DataConfig()\n"
            "print(d.source.type, any(m == 'torch' or m.startswith('torch.') for m in sys.modules),"
            " any(m.startswith('ecg_bench.models') for m in sys.modules))")  # fmt: skip
    out = run([sys.executable, "-X", "importtime", "-c", code], [SRC], SRC)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["synthetic", "False", "False"]
    assert not [line for line in out.stderr.splitlines() if line.rstrip().endswith(" torch")]


@pytest.fixture
def registry_of(monkeypatch, tmp_path):
    """A fresh registry reading entry point group ``ecg_bench.test_demo`` of distributions installed in tmp_path."""
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    made = []

    def make(entry_points: dict[str, str], package: str | None = None) -> Registry:
        install(tmp_path / "site", f"demo-{len(made)}", {"ecg_bench.test_demo": entry_points})
        reg = Registry("demo thing", package=package, listing=f"test_demo_{len(made)}", entry_point_group="ecg_bench.test_demo")
        made.append(reg.listing)
        return reg

    yield make
    for listing in made:
        _REGISTRIES.pop(listing, None)


def test_an_entry_point_that_fails_to_load_names_the_distribution(registry_of, tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "broken_plugin.py").write_text("raise RuntimeError('needs a GPU driver')\n")
    reg = registry_of({"broken": "broken_plugin"})
    with pytest.raises(PluginError, match=r"plug-in 'broken' = 'broken_plugin' \(entry point group ecg_bench.test_demo, "
                                          r"distribution demo-0\) failed to load: RuntimeError: needs a GPU driver"):  # fmt: skip
        reg.names()


def test_a_component_module_that_fails_to_import_is_named(registry_of, tmp_path):
    pkg = tmp_path / "site" / "demo_components"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "good.py").write_text("")
    (pkg / "_private.py").write_text("raise RuntimeError('never imported')\n")
    (pkg / "bad.py").write_text("import not_installed_anywhere\n")
    reg = registry_of({}, package="demo_components")
    with pytest.raises(PluginError, match="demo thing module demo_components.bad failed to import: ModuleNotFoundError"):
        reg.get("x")
    (pkg / "bad.py").write_text("")
    with pytest.raises(UnknownNameError, match="unknown demo thing 'x'"):  # a failed load is tried again
        reg.get("x")


def test_import_formats_are_registered_by_their_encoders(capsys):
    """``import-encoder --format NAME`` looks NAME up in IMPORT_FORMATS, which the encoders' own modules fill
    (st_mem in mae/public.py, merl in merl/public.py); an unknown format is refused listing the registered ones."""
    from ecg_bench import cli
    from ecg_bench.models.encoders.mae.public import convert_st_mem
    from ecg_bench.models.encoders.merl.public import convert_merl
    from ecg_bench.models.encoders.weights import IMPORT_FORMATS

    assert IMPORT_FORMATS.get("st_mem") is convert_st_mem and IMPORT_FORMATS.get("merl") is convert_merl
    assert cli.main(["list"]) == 0
    assert "import_formats: merl, st_mem" in capsys.readouterr().out
    assert cli.main(["import-encoder", "--format", "nope", "--src", "x.pth", "--out", "y"]) == 2
    assert "--format must be one of merl, st_mem, got 'nope'" in capsys.readouterr().err

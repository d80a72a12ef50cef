"""Every script in benchmarks/ runs: its ``--smoke`` mode (tiny sizes, one repeat, seconds) exits 0 and prints its
table or JSON. Nothing is timed; the figures themselves are measured by hand (benchmarks/README.md). A new script
without a ``--smoke`` mode fails here (argparse refuses the flag)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
SCRIPTS = sorted(BENCH.glob("*.py"))


def _outputs(stdout: str) -> tuple[list[dict], list[str]]:
    """The JSON objects (the whole output, or one per line) and the markdown table rows a script printed."""
    objs: list[dict] = []
    start = stdout.find("{")
    decoder = json.JSONDecoder()
    while start != -1:
        try:
            obj, end = decoder.raw_decode(stdout, start)
        except json.JSONDecodeError:
            start = stdout.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            objs.append(obj)
        start = stdout.find("{", end)
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and line.rstrip().endswith("|")]
    return objs, rows


def test_the_scripts_are_found():
    assert {p.name for p in SCRIPTS} >= {"bench_preprocess.py", "bench_gpu.py", "bench_train_step.py"}


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_smoke_mode_runs_and_prints_its_results(script: Path, tmp_path, shared_data):
    env = {**os.environ, "ECG_BENCH_SHARED_DATA": str(shared_data), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg", "TMPDIR": str(tmp_path)}  # fmt: skip
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, str(script), "--smoke"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)  # fmt: skip
    assert proc.returncode == 0, f"{script.name} --smoke exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    objs, rows = _outputs(proc.stdout)
    assert objs or len(rows) >= 2, f"{script.name} --smoke printed no JSON and no table:\n{proc.stdout[-2000:]}"


def test_gpu_checks_script_is_valid_bash_naming_existing_scripts_and_flags():
    """gpu_checks.sh needs CUDA (nvidia-smi, NCCL): it is not run here. Its syntax, the benchmark scripts it starts
    and their flags are checked, and bench_gpu.py's own smoke mode (CPU) runs above."""
    sh = BENCH / "gpu_checks.sh"
    subprocess.run(["bash", "-n", str(sh)], check=True)
    text = sh.read_text()
    calls = re.findall(r"python (benchmarks/\S+\.py)((?: --?[\w-]+(?: [^-\s|>]\S*)?)*)", text)
    assert calls, "gpu_checks.sh starts no benchmark"
    for path, flags in calls:
        script = ROOT / path
        assert script.exists(), f"gpu_checks.sh runs {path}, which does not exist"
        source = script.read_text()
        for flag in re.findall(r"--[\w-]+", flags):
            assert f'"{flag}"' in source, f"gpu_checks.sh passes {flag} to {path}, which does not define it"

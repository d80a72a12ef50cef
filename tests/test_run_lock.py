"""One writer per run folder (``ecg_bench.run_lock``): the holder is named, a second writer is refused with exit 2,
a dead holder's lock is taken over with a log line, a child writes under the lock its parent passed down; two real
``ecg-bench run`` processes into one folder leave the first one's files byte for byte."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ecg_bench import folders, run_lock
from ecg_bench.presets import tiny

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _wait_for(predicate, proc: subprocess.Popen | None = None, what: str = "") -> None:
    """Poll until ``predicate()``; fails if ``proc`` ends first (no time limit: pytest's own timeout applies)."""
    while not predicate():
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            pytest.fail(f"the process ended (rc {proc.returncode}) before {what}: {out[-3000:]}")
        time.sleep(0.05)


def _holding(folder: Path, pid: int) -> bool:
    h = run_lock.read_holder(run_lock.lock_path(folder))
    return h is not None and h["pid"] == pid


def _holder_process(folder: Path) -> subprocess.Popen:
    """Another process that takes ``folder``'s lock and keeps it until its stdin closes."""
    code = textwrap.dedent(f"""
        import sys
        from ecg_bench import run_lock
        with run_lock.hold({str(folder)!r}, "a test's folder"):
            print("held", flush=True)
            sys.stdin.read()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    assert p.stdout.readline().strip() == "held"
    return p


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    folder = folders.claim(tmp_path / "run", "run")
    p = _holder_process(folder)
    try:
        h = run_lock.read_holder(run_lock.lock_path(folder))
        assert h["pid"] == p.pid and h["host"] == socket.gethostname() and h["since"] and h["command"]
        with pytest.raises(run_lock.RunLockError, match=rf"being written by pid {p.pid} on {socket.gethostname()}"):
            with run_lock.hold(folder, "a run folder"):
                pytest.fail("entered a folder another process holds")
    finally:
        p.stdin.close()
        p.wait()
    assert not run_lock.holder_path(run_lock.lock_path(folder)).exists()  # released: the holder file goes with it
    with run_lock.hold(folder) as lock:  # free again
        assert run_lock.read_holder(lock)["pid"] == os.getpid()
        with run_lock.hold(folder):  # re-entrant within one process
            pass
        assert run_lock.read_holder(lock)["pid"] == os.getpid()


def test_a_dead_holders_lock_is_taken_over_with_a_log_line(tmp_path, caplog):
    folder = folders.claim(tmp_path / "run", "run")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run_lock.holder_path(run_lock.lock_path(folder)).write_text(json.dumps(
        {"pid": dead.pid, "host": socket.gethostname(), "command": "ecg-bench run", "since": "2025-01-01T00:00:00"}))
    with caplog.at_level(logging.WARNING, logger="ecg_bench"), run_lock.hold(folder) as lock:
        assert run_lock.read_holder(lock)["pid"] == os.getpid()
    assert f"taking over the lock left by pid {dead.pid}" in caplog.text and "no longer running" in caplog.text


def test_a_child_writes_under_the_lock_its_parent_passed_down_and_no_other_process_does(tmp_path):
    folder = folders.claim(tmp_path / "run", "run")
    code = f"from ecg_bench import run_lock\nwith run_lock.hold({str(folder)!r}):\n    print('wrote')"
    with run_lock.hold(folder) as lock:
        child = subprocess.run([sys.executable, "-c", code], env=run_lock.passed_down_env(lock, _env()),
                               capture_output=True, text=True)  # fmt: skip
        assert child.returncode == 0 and child.stdout.strip() == "wrote", child.stderr
        other = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True)
        assert other.returncode != 0 and f"being written by pid {os.getpid()}" in other.stderr
        # a passed-down entry naming another process than the holder does not open the lock
        forged = {**_env(), run_lock.ENV: json.dumps({str(lock.absolute()): os.getppid()})}
        other = subprocess.run([sys.executable, "-c", code], env=forged, capture_output=True, text=True)
        assert other.returncode != 0 and "RunLockError" in other.stderr


def _files(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (less the lock's own two files) -> sha256 of its bytes."""
    skip = {run_lock.LOCK_NAME, run_lock.LOCK_NAME + run_lock.HOLDER_SUFFIX}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}  # fmt: skip


@pytest.mark.slow
def test_two_runs_into_one_folder_the_second_is_refused_and_the_first_keeps_every_byte(tmp_path):
    out = tmp_path / "run"
    cfg = tiny(str(out)).to_dict()
    cfg["train"]["num_threads"], cfg["eval"]["conditions"] = 1, ["real"]
    (tmp_path / "tiny.json").write_text(json.dumps(cfg))
    cmd = [sys.executable, "-m", "ecg_bench", "--log_level", "WARNING", "run", "--config", str(tmp_path / "tiny.json")]

    # A runs; once it holds the folder it is stopped (SIGSTOP), so B starts while A is in the middle of its run
    a = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=_env())
    _wait_for(lambda: _holding(out, a.pid), a, "it took the folder's lock")
    os.kill(a.pid, signal.SIGSTOP)
    before = _files(out)
    try:
        b = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    finally:
        os.kill(a.pid, signal.SIGCONT)
    assert b.returncode == 2, b.stderr
    assert f"is being written by pid {a.pid} on {socket.gethostname()}" in b.stderr and "Traceback" not in b.stderr
    assert _files(out) == before  # B wrote nothing: not config.json, not run.log
    assert a.wait() == 0, a.stdout.read()[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["output_dir"] == str(out) and results["training"]["steps"] == 4
    assert "is being written" not in (out / "run.log").read_text()

    # A finished; a process holds its folder (as a resumed run would) while B resumes into it: B is refused and
    # not one byte of A's run changes
    finished = _files(out)
    holder = _holder_process(out)
    try:
        resume = [*cmd, "--train.resume_from", str(out / "checkpoints" / "final")]
        b = subprocess.run(resume, capture_output=True, text=True, env=_env())
    finally:
        holder.stdin.close()
        holder.wait()
    assert b.returncode == 2 and f"being written by pid {holder.pid}" in b.stderr, b.stderr
    assert _files(out) == finished


def test_a_child_given_the_lock_keeps_it_after_its_parent_is_killed(tmp_path):
    """What a sweep does for its cell: the child holds the OS lock too, so the folder stays locked while it runs,
    even where nothing makes it die with its parent."""
    folder = folders.claim(tmp_path / "cell", "run")
    code = textwrap.dedent(f"""
        import subprocess, sys
        from ecg_bench import run_lock
        with run_lock.hold({str(folder)!r}, "a sweep cell") as lock, run_lock.descriptors_for_child(lock) as fds:
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], pass_fds=fds,
                                     preexec_fn=lambda: None)  # a preexec_fn, as the sweep's: filelock's at-fork hook runs
            print(child.pid, flush=True)
            child.wait()
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=_env())
    child = int(parent.stdout.readline())
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        with pytest.raises(run_lock.RunLockError, match=rf"pid {parent.pid} .*no longer running, a process it started"):
            with run_lock.hold(folder):
                pass
    finally:
        os.kill(child, signal.SIGKILL)
    _wait_for(lambda: not run_lock.pid_alive(child))
    with run_lock.hold(folder):  # the last holder gone: free
        pass


def test_a_lock_beside_a_replaced_folder_is_removed_when_released_and_refuses_a_second_writer(tmp_path):
    out = tmp_path / "encoder"
    beside = tmp_path / "encoder.lock"
    code = textwrap.dedent(f"""
        import sys
        from ecg_bench import run_lock
        with run_lock.hold({str(out)!r}, "pretraining output", lock_file={str(beside)!r}):
            print("held", flush=True)
            sys.stdin.read()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert p.stdout.readline().strip() == "held"
        with pytest.raises(run_lock.RunLockError, match=f"pid {p.pid}"):
            with run_lock.hold(out, "pretraining output", lock_file=beside):
                pass
    finally:
        p.stdin.close()
        p.wait()
    assert not beside.exists() and not run_lock.holder_path(beside).exists()  # nothing left beside the folder
    with run_lock.hold(out, "pretraining output", lock_file=beside):
        assert beside.exists()
    assert not beside.exists()


def test_pretraining_takes_the_lock_of_its_output(tmp_path, tiny_store, capsys):
    """A second pretraining into the same --out is refused naming the first (here: a process holding its lock)."""
    from ecg_bench import cli

    out = tmp_path / "enc"
    code = textwrap.dedent(f"""
        import sys
        from ecg_bench import run_lock
        with run_lock.hold({str(out)!r}, "pretraining output", lock_file={str(out) + '.lock'!r}):
            print("held", flush=True)
            sys.stdin.read()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    try:
        assert p.stdout.readline().strip() == "held"
        rc = cli.main(["pretrain", "mae", "--store", str(tiny_store.path), "--out", str(out), "--loop.steps", "1"])
    finally:
        p.stdin.close()
        p.wait()
    assert rc == 2 and f"{out} is being written by pid {p.pid}" in capsys.readouterr().err
    assert not out.exists()


def _holding_process(folder: Path, kind: str) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys
        from ecg_bench import folders, run_lock
        with run_lock.hold(folders.claim({str(folder)!r}, {kind!r}), "a test's folder"):
            print("held", flush=True)
            sys.stdin.read()
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=_env())
    assert p.stdout.readline().strip() == "held"
    return p


def test_evaluate_and_data_take_the_lock_of_their_folder(tiny_checkpoint, tmp_path, capsys):
    from ecg_bench import cli

    out = tmp_path / "eval"
    p = _holding_process(out, "eval")
    try:
        rc = cli.main(["evaluate", "--checkpoint", str(tiny_checkpoint[1]), "--output_dir", str(out)])
    finally:
        p.stdin.close()
        p.wait()
    assert rc == 2 and f"{out} is being written by pid {p.pid}" in capsys.readouterr().err
    assert sorted(f.name for f in out.iterdir()) == [folders.MARKER, run_lock.LOCK_NAME]  # nothing written

    out = tmp_path / "data"
    p = _holding_process(out, "run")
    try:
        rc = cli.main(["data", "--output_dir", str(out), "--data.source.type", "synthetic", "--data.source.num_patients", "10"])
    finally:
        p.stdin.close()
        p.wait()
    assert rc == 2 and f"{out} is being written by pid {p.pid}" in capsys.readouterr().err
    assert sorted(f.name for f in out.iterdir()) == [folders.MARKER, run_lock.LOCK_NAME]

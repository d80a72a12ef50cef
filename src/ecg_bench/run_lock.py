"""One writer per folder: the lock every writer of a run, evaluation, sweep cell or pretraining output takes.

``hold(folder, what)`` takes ``<folder>/.ecg-bench.lock`` (an OS file lock through ``filelock``: the
kernel drops it when its process dies, kill -9 included) and writes beside it who holds it,
``<folder>/.ecg-bench.lock.json``::

    {"pid": 4242, "host": "node1", "command": "ecg-bench run --output_dir runs/x", "since": "2025-01-01T12:00:00+00:00"}

A second writer is refused at once with a ``RunLockError`` (exit 2) naming that holder, unless it
asked to wait (``timeout``). A holder file left by a process that died is taken over, with a log line
naming it. The folder is one ecg-bench made (``folders.claim``) before it is locked, so the lock never
lands in a folder of the user's. A folder replaced whole while it is written (a pretraining output,
``folders.replace``) is locked beside it instead (``lock_file=<folder>.lock``); that file is removed
when the lock is released, and a process that waited on a removed file takes the lock again.

A parent that holds a folder's lock for the child that writes it (a sweep running a cell) lists it in
the child's environment (``ECG_BENCH_HELD_LOCKS``, ``passed_down_env``); a descendant of that holder
writes under the parent's lock, any other process is refused. The sweep also hands its cell the
lock's descriptor (``descriptors_for_child``): the OS lock then lasts while either of them runs, so a
cell left running by a killed sweep still keeps a rerun out of its folder. Under ``run --nproc N``
rank 0 takes the lock; the other ranks do not write the folder.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock
from filelock import Timeout as LockTimeout

from ecg_bench.folders import FolderError
from ecg_bench.logging_utils import get_logger

log = get_logger(__name__)

LOCK_NAME = ".ecg-bench.lock"
HOLDER_SUFFIX = ".json"
ENV = "ECG_BENCH_HELD_LOCKS"
"""Environment variable: JSON {lock file (absolute): pid} of the locks an ancestor holds for its children."""
WAIT_LOG_EVERY_S = 60.0
"""While waiting for another writer, log a line this often."""


class RunLockError(FolderError):
    """Another process is writing this folder (it holds the folder's lock)."""


_held: dict[str, tuple[FileLock, int]] = {}  # lock file -> (its FileLock, how many holds in this process)
_fds: dict[str, int] = {}  # lock file -> the descriptor of its OS lock (while held)
_guard = threading.Lock()


def lock_path(folder: str | Path) -> Path:
    """The lock file of ``folder``: inside it."""
    return Path(folder) / LOCK_NAME


def holder_path(lock_file: str | Path) -> Path:
    lock_file = Path(lock_file)
    return lock_file.with_name(lock_file.name + HOLDER_SUFFIX)


def read_holder(lock_file: str | Path) -> dict[str, Any] | None:
    """Who holds (or last held) ``lock_file``, from its holder file; None when there is none or it is unreadable."""
    try:
        h = json.loads(holder_path(lock_file).read_text()[:4096])
    except (OSError, ValueError):
        return None
    return h if isinstance(h, dict) and isinstance(h.get("pid"), int) else None


def describe_holder(h: dict[str, Any] | None) -> str:
    if h is None:
        return "another process (it wrote no holder file)"
    cmd = str(h.get("command", ""))[:300]
    gone = ""
    if h.get("host") == socket.gethostname() and not pid_alive(h["pid"]):
        gone = "; it is no longer running, a process it started holds the lock now"
    return f"pid {h['pid']} on {h.get('host', '?')} ({cmd!r}, since {h.get('since', '?')}{gone})"


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] != "Z"
    except (OSError, ValueError, IndexError):
        return True


def ancestors(pid: int | None = None) -> list[int]:
    """The parent, grandparent, ... of ``pid`` (this process by default), from /proc; [os.getppid()] without it."""
    pid = os.getpid() if pid is None else pid
    out: list[int] = []
    while pid > 1 and len(out) < 64:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat[stat.rindex(")") + 2 :].split()[1])
        except (OSError, ValueError, IndexError):
            return out or [os.getppid()]
        out.append(pid)
    return out


def _inherited(lock_file: str, holder: dict[str, Any] | None) -> bool:
    """True when ``lock_file`` is held by an ancestor of this process that passed it down (``ENV``)."""
    try:
        passed = json.loads(os.environ.get(ENV, "") or "{}")
    except ValueError:
        return False
    pid = passed.get(lock_file) if isinstance(passed, dict) else None
    return (isinstance(pid, int) and holder is not None and holder.get("pid") == pid
            and holder.get("host") == socket.gethostname() and pid in ancestors())  # fmt: skip


def _command() -> str:
    args = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    if args[0] in ("__main__.py", "-m", "-c"):
        args[0] = "ecg-bench"
    return " ".join(args)[:1000]


def _write_holder(lock_file: Path, what: str) -> None:
    h = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(), "what": what,
         "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}  # fmt: skip
    dst = holder_path(lock_file)
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(h) + "\n")
    os.replace(tmp, dst)


def _acquire(lock: FileLock, lock_file: Path, folder: Path, what: str, timeout: float) -> None:
    try:
        lock.acquire(timeout=0)
        return
    except LockTimeout:
        pass
    holder = read_holder(lock_file)
    if timeout <= 0:
        raise RunLockError(
            f"{folder} is being written by {describe_holder(holder)}: one writer at a time in {what}. "
            "Wait for it to finish (or stop it), or choose another folder"
        )
    t0 = time.monotonic()
    log.info("waiting for %s (%s), held by %s", folder, what, describe_holder(holder))
    while True:
        waited = time.monotonic() - t0
        if waited >= timeout:
            raise RunLockError(f"{folder} is still being written by {describe_holder(read_holder(lock_file))} "
                               f"after {waited:.0f} s of waiting; one writer at a time in {what}")  # fmt: skip
        try:
            lock.acquire(timeout=min(WAIT_LOG_EVERY_S, timeout - waited))
            log.info("got %s after %.0f s", folder, time.monotonic() - t0)
            return
        except LockTimeout:
            log.info("still waiting for %s, held by %s", folder, describe_holder(read_holder(lock_file)))


def _new_lock(key: str) -> FileLock:
    try:  # the OS lock's descriptor is recorded when acquired (``descriptors_for_child``, ``_same_file``)
        return FileLock(key, thread_local=False, on_acquired=lambda fd: _fds.__setitem__(key, fd))
    except ValueError:  # a lock without a descriptor (filelock's soft lock)
        return FileLock(key, thread_local=False)


def _same_file(key: str) -> bool:
    """Whether the lock this process holds on ``key`` is on the file at that path now (not on one removed)."""
    fd = _fds.get(key)
    try:
        return fd is None or os.fstat(fd).st_ino == os.stat(key).st_ino
    except OSError:
        return False


@contextmanager
def hold(folder: str | Path, what: str = "a run folder", *, timeout: float = 0.0,
         lock_file: str | Path | None = None) -> Iterator[Path]:  # fmt: skip
    """Be the one writer of ``folder`` while the block runs (re-entrant within a process); yields the lock file.

    ``folder`` exists already (made by ``folders.claim``). Another process holding it: RunLockError naming
    it at once (``timeout`` 0), or after waiting up to ``timeout`` seconds (``float('inf')``: as long as it
    takes). A descendant of the holder that passed it down (``passed_down_env``) writes under that lock.
    """
    beside = lock_file is not None  # a lock file outside the folder: removed when released (``_same_file``)
    path = Path(lock_file) if beside else lock_path(folder)
    key = str(path.absolute())
    with _guard:
        if key in _held:
            lock, n = _held[key]
            _held[key] = (lock, n + 1)
            first = False
        else:
            first = True
    if first:
        holder = read_holder(path)
        lock = _new_lock(key)
        try:
            _acquire(lock, path, Path(folder), what, timeout)
            while beside and not _same_file(key):  # the file was removed by its last holder while we waited
                lock.release()
                lock = _new_lock(key)
                _acquire(lock, path, Path(folder), what, timeout)
        except RunLockError:
            if not _inherited(key, read_holder(path)):
                raise
            lock = None
        if lock is None:  # outside the except clause: an error of the block is not chained to the refusal
            log.debug("%s: writing under the lock of pid %s (an ancestor of this process)", folder, holder and holder["pid"])
            yield path
            return
        if holder is not None and holder.get("pid") != os.getpid():
            here = holder.get("host") == socket.gethostname()
            gone = "no longer running" if here and not pid_alive(holder["pid"]) else "its lock was released"
            log.warning("%s: taking over the lock left by %s (%s)", folder, describe_holder(holder), gone)
        _write_holder(path, what)
        with _guard:
            _held[key] = (lock, 1)
    try:
        yield path
    finally:
        with _guard:
            lock, n = _held[key]
            if n > 1:
                _held[key] = (lock, n - 1)
                lock = None
            else:
                del _held[key]
                _fds.pop(key, None)
        if lock is not None:
            holder_path(path).unlink(missing_ok=True)
            if beside:  # no lock file left beside the folder; a waiter on this file notices (``_same_file``)
                path.unlink(missing_ok=True)
            lock.release()


@contextmanager
def descriptors_for_child(lock_file: str | Path) -> Iterator[tuple[int, ...]]:
    """Descriptors to give a child (``subprocess.Popen(pass_fds=...)``) so that it holds this process's OS lock on
    ``lock_file`` too, and keeps it held should this process die before it; empty when not held here.

    A duplicate, closed after the block: filelock closes its own descriptors in a forked child (its at-fork
    handler, which runs when Popen has a ``preexec_fn``), not this one; the lock stays this process's.
    """
    fd = _fds.get(str(Path(lock_file).absolute()))
    dup = os.dup(fd) if fd is not None else None
    try:
        yield () if dup is None else (dup,)
    finally:
        if dup is not None:
            os.close(dup)


def passed_down_env(lock_file: str | Path, env: dict[str, str]) -> dict[str, str]:
    """A copy of ``env`` (a child's environment) that lets the child write under this process's lock ``lock_file``."""
    try:
        passed = json.loads(env.get(ENV, "") or "{}")
    except ValueError:
        passed = {}
    passed = passed if isinstance(passed, dict) else {}
    passed[str(Path(lock_file).absolute())] = os.getpid()
    return {**env, ENV: json.dumps(passed)}

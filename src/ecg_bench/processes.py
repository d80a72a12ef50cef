"""Processes that die with their parent: sweep cells, and the ranks ``run --nproc N`` starts through torchrun.

Linux's ``PR_SET_PDEATHSIG`` makes the kernel signal a process when its parent dies, kill -9 included;
it survives ``exec``. ``die_with_parent`` sets it for this process; ``popen_kwargs()`` gives the
``preexec_fn`` that sets it in a child between fork and exec (the signal fires when the *thread* that
started the child ends, so a child is waited for in the thread that started it).

torchrun's agent starts its ranks in a session of their own and cannot stop them when it is killed with
SIGKILL, so each rank sets the signal itself at startup (``die_with_launcher``), against the launcher
that ``launcher`` named, and exits at once if that launcher is already gone. Elsewhere than
Linux these are no-ops.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

PR_SET_PDEATHSIG = 1
LAUNCHER_ENV = "ECG_BENCH_LAUNCHER_PID"
"""Environment variable naming the process (``run --nproc N``) whose ranks die with it."""

_libc: Any = None


def _prctl() -> Callable[..., int] | None:
    global _libc
    if not sys.platform.startswith("linux"):
        return None
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc.prctl


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> bool:
    """Have the kernel send ``sig`` to this process when its parent dies. ``parent``: the pid the parent must
    have; when it is already gone (this process was reparented), exit at once. False where unsupported."""
    prctl = _prctl()
    if prctl is None:
        return False
    if prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        return False
    if parent is not None and os.getppid() != parent:  # the parent died before the signal was set
        os._exit(128 + int(sig))
    return True


def _preexec() -> None:  # runs in the child between fork and exec: no logging, no locks
    die_with_parent(signal.SIGKILL)


def popen_kwargs() -> dict[str, Any]:
    """Keyword arguments for ``subprocess.Popen``/``run`` that make the child die with this process (Linux)."""
    return {"preexec_fn": _preexec} if _prctl() is not None else {}


@contextmanager
def launcher() -> Iterator[None]:
    """While the block runs, this process is the launcher the ranks it starts die with (they inherit ``os.environ``)."""
    old = os.environ.get(LAUNCHER_ENV)
    os.environ[LAUNCHER_ENV] = str(os.getpid())
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(LAUNCHER_ENV, None)
        else:
            os.environ[LAUNCHER_ENV] = old


def die_with_launcher() -> None:
    """In a rank started by ``run --nproc N`` (its environment names the launcher): die with the launcher."""
    pid = os.environ.get(LAUNCHER_ENV, "")
    if pid.isdigit() and "LOCAL_RANK" in os.environ:
        die_with_parent(signal.SIGKILL, parent=int(pid))

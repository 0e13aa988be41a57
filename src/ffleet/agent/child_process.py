"""Supervise one FFmpeg child: spawn it, stop it on a timeout or cancel, reap and measure it.

The child runs in its own session so that a kill reaches every process it started, and on Linux
it is told to die with the agent (`PR_SET_PDEATHSIG`): an orphan would encode on beside the
retry, slowing it, and nobody would measure or stop it. It is reaped
with `os.wait4`, so its own CPU time and peak memory are measured, not ours. Its stderr is read
as it comes: the last bytes are kept for the result, and the failure markers that went past say
whether running the job again could help.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Literal

from ffleet.agent.neighbours import other_ffmpeg

STDERR_TAIL_BYTES = 4096
TERM_GRACE_S = 2.0
_POLL_S = 0.05
NEIGHBOUR_CHECK_S = 1.0  # how often other FFmpeg processes are looked for during a run
_PR_SET_PDEATHSIG = 1

# Matched against every stderr line: failures that a retry of the same job cannot fix ...
_PERMANENT = (
    "unknown encoder",
    "encoder not found",
    "invalid argument",
    "error setting option",
    "no such file or directory",
    "unrecognized option",
    "option not found",
    "invalid data found when processing input",
    "permission denied",
)
# ... unless one of these transient causes shows up too (they often end in EINVAL as well).
_TRANSIENT = (
    "out of memory",
    "cannot allocate memory",
    "resource temporarily unavailable",
    "connection refused",
    "connection reset",
    "connection timed out",
    "broken pipe",
    "network is unreachable",
    "no space left on device",
)

StopReason = Literal["timeout", "canceled", "stalled"]


@dataclass(frozen=True)
class Placement:
    """Where and how nicely a child runs: CPUs it may use and its nice level (None: as the
    agent). Applied in the forked child before exec, so FFmpeg's threads all inherit it."""

    cpus: tuple[int, ...] | None = None
    nice: int | None = None

    def apply(self) -> None:
        if self.cpus is not None:
            os.sched_setaffinity(0, self.cpus)
        if self.nice is not None:
            os.nice(self.nice - os.nice(0))


@dataclass
class ChildExit:
    """How a child ended and what it used; None where wait4 gave no rusage."""

    exit_code: int | None
    wall_s: float
    user_s: float | None
    system_s: float | None
    peak_rss_bytes: int | None
    stderr_tail: str
    stopped: StopReason | None  # set when we had to kill it
    permanent: bool  # stderr showed a failure retrying cannot fix
    others_seen: int = 0  # other FFmpeg processes that ran on this machine meanwhile


class _StderrTail:
    """Keeps the last bytes of stderr and notes which failure markers went past."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.permanent = False
        self.transient = False

    def consume(self, stream: IO[bytes]) -> None:
        for raw in iter(stream.readline, b""):
            self.buffer += raw
            del self.buffer[:-STDERR_TAIL_BYTES]
            lowered = raw.decode("utf-8", "replace").lower()
            self.permanent |= any(marker in lowered for marker in _PERMANENT)
            self.transient |= any(marker in lowered for marker in _TRANSIENT)


def run_child(
    argv: list[str],
    *,
    deadline: float,
    cancel: threading.Event,
    on_line: Callable[[str], None] | None,
    stalled: Callable[[], bool] | None = None,
    placement: Placement | None = None,
    on_start: Callable[[int], None] | None = None,
) -> ChildExit:
    """Run argv in its own session to its end, the monotonic `deadline`, a cancel or, when
    `stalled` (polled every 50 ms) says so, a stall; SIGTERM, then SIGKILL after a grace
    period, reaches its whole process group (a SIGSTOPped child dies of the SIGKILL). `on_line`
    gets each stdout line from a reader thread. `placement` pins and renices the child before
    it runs FFmpeg; `on_start` gets the child's pid (its group's id). Raises OSError when the
    child cannot start."""
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if on_line is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=_before_exec(os.getpid(), placement),
    )
    reaper = _Reaper(proc.pid)
    if on_start is not None:
        on_start(proc.pid)

    def read_stdout(stream: IO[bytes]) -> None:
        assert on_line is not None
        for raw in iter(stream.readline, b""):
            on_line(raw.decode("utf-8", "replace"))

    tail = _StderrTail()
    assert proc.stderr is not None
    readers = [threading.Thread(target=tail.consume, args=(proc.stderr,), daemon=True)]
    if proc.stdout is not None:
        readers.append(threading.Thread(target=read_stdout, args=(proc.stdout,), daemon=True))
    for thread in readers:
        thread.start()
    reaper.start()

    stop_reason: StopReason | None = None
    others: set[int] = set()
    next_look = time.monotonic()
    try:
        while not reaper.finished.wait(_POLL_S):
            if time.monotonic() >= next_look:
                others |= other_ffmpeg({proc.pid})
                next_look = time.monotonic() + NEIGHBOUR_CHECK_S
            if cancel.is_set():
                stop_reason = "canceled"
                break
            if time.monotonic() >= deadline:
                stop_reason = "timeout"
                break
            if stalled is not None and stalled():
                stop_reason = "stalled"
                break
    finally:
        if not reaper.finished.is_set():
            reaper.signal_group(signal.SIGTERM)
            if not reaper.finished.wait(TERM_GRACE_S):
                reaper.signal_group(signal.SIGKILL)
            reaper.finished.wait()
    for thread in readers:
        thread.join(timeout=5)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()

    exit_code = reaper.exit_code
    proc.returncode = exit_code  # we reaped it: keep Popen from waiting on it again
    usage = reaper.usage
    # A child that finished on its own just as we gave up still counts as finished.
    stopped = stop_reason if stop_reason and exit_code != 0 else None
    return ChildExit(
        exit_code=exit_code,
        wall_s=reaper.ended - started,
        user_s=None if usage is None else usage.ru_utime,
        system_s=None if usage is None else usage.ru_stime,
        peak_rss_bytes=None if usage is None else usage.ru_maxrss * 1024,  # KiB on Linux
        stderr_tail=tail.buffer.decode("utf-8", "replace"),
        stopped=stopped,
        permanent=tail.permanent and not tail.transient,
        others_seen=len(others),
    )


def _before_exec(parent: int, placement: Placement | None) -> Callable[[], None] | None:
    """What the forked child does before exec: ask to die with the agent first (so a child
    whose agent is already gone runs nothing), then take its placement."""
    steps = [
        step
        for step in (_die_with_parent(parent), None if placement is None else placement.apply)
        if step is not None
    ]
    if not steps:
        return None

    def in_child() -> None:
        for step in steps:
            step()

    return in_child


def _die_with_parent(parent: int) -> Callable[[], None] | None:
    """Linux: a function for the forked child, before exec, that asks the kernel to SIGKILL
    it when the thread that started it dies (the agent is killed: its threads all go), and
    exits if the agent died before the request was made. It only calls prctl, resolved here
    in the parent, and getppid: nothing that takes a lock another thread could hold at the
    fork, which is what makes a preexec function unsafe in a threaded program."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = _prctl()
    getppid = os.getppid
    exit_now = os._exit

    def in_child() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if getppid() != parent:
            exit_now(127)

    return in_child


@functools.cache
def _prctl() -> Callable[..., int]:
    """libc's prctl, resolved once: loading the library per job cost 0.4 ms of CPU."""
    function: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return function


class _Reaper:
    """Waits for a child without reaping it (WNOWAIT) so that the pid cannot be reused while
    a kill may still be sent to its group, then reaps it with wait4 for the rusage."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.finished = threading.Event()
        self.exit_code: int | None = None
        self.usage: resource.struct_rusage | None = None
        self.ended = 0.0
        self._lock = threading.Lock()
        self._exited = False

    def start(self) -> None:
        threading.Thread(target=self._wait, name=f"ffleet-wait-{self.pid}", daemon=True).start()

    def signal_group(self, signum: int) -> None:
        with self._lock:
            if not self._exited:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signum)

    def _wait(self) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        with self._lock:
            self._exited = True
        with contextlib.suppress(ChildProcessError):
            _, status, self.usage = os.wait4(self.pid, 0)
            self.exit_code = os.waitstatus_to_exitcode(status)
        self.ended = time.monotonic()
        self.finished.set()

"""Supervising a child: its exit and usage are measured, a timeout or cancel kills its whole
process group. The children are tiny Python scripts, so no FFmpeg is needed."""

from __future__ import annotations

import sys
import threading
import time

import psutil
import pytest

from ffleet.agent.child_process import STDERR_TAIL_BYTES, run_child
from tests.processes import wait_until


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def far() -> float:
    return time.monotonic() + 60


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_finished_child_is_measured_and_its_stdout_read() -> None:
    lines: list[str] = []
    code = "import sys; print('frame=1'); print('frame=2'); sys.exit(3)"

    done = run_child(python(code), deadline=far(), cancel=threading.Event(), on_line=lines.append)

    assert done.exit_code == 3 and done.stopped is None
    assert lines == ["frame=1\n", "frame=2\n"]
    assert done.wall_s > 0
    assert done.user_s is not None and done.system_s is not None
    assert done.peak_rss_bytes is not None and done.peak_rss_bytes > 1_000_000


def test_a_timeout_kills_the_whole_process_group() -> None:
    pids: list[str] = []
    code = (
        "import subprocess, sys, time;"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        "print(p.pid, flush=True); time.sleep(60)"
    )
    started = time.monotonic()

    # The deadline leaves a loaded machine time to start the grandchild and print its pid.
    done = run_child(
        python(code), deadline=started + 5.0, cancel=threading.Event(), on_line=pids.append
    )

    assert done.stopped == "timeout"
    assert done.exit_code is not None and done.exit_code < 0
    assert time.monotonic() - started < 20
    assert pids
    # The grandchild went with its group: signalled with it, it dies as soon as it is scheduled.
    wait_until(lambda: gone(int(pids[0])), timeout=10)


def test_a_cancel_stops_the_child() -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()

    done = run_child(
        python("import time; time.sleep(60)"), deadline=far(), cancel=cancel, on_line=None
    )

    assert done.stopped == "canceled"
    assert done.wall_s < 10


def test_a_child_that_ignores_sigterm_is_killed() -> None:
    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        "print('ready', flush=True); time.sleep(60)"
    )
    cancel = threading.Event()

    def on_line(_: str) -> None:
        cancel.set()

    done = run_child(python(code), deadline=far(), cancel=cancel, on_line=on_line)

    assert done.stopped == "canceled" and done.exit_code == -9


@pytest.mark.parametrize(
    ("stderr", "permanent"),
    [
        ("Unknown encoder 'h264_nope'", True),
        ("Invalid argument", True),
        ("Connection refused ... Invalid argument", False),  # a transient cause wins
        ("Conversion failed!", False),
    ],
)
def test_stderr_markers_say_whether_a_retry_could_help(stderr: str, permanent: bool) -> None:
    code = f"import sys; sys.stderr.write({stderr!r} + '\\n'); sys.exit(1)"

    done = run_child(python(code), deadline=far(), cancel=threading.Event(), on_line=None)

    assert done.permanent is permanent
    assert done.stderr_tail == stderr + "\n"


def test_only_the_end_of_stderr_is_kept() -> None:
    code = "import sys\nfor i in range(2000): sys.stderr.write(f'line {i}\\n')"

    done = run_child(python(code), deadline=far(), cancel=threading.Event(), on_line=None)

    assert len(done.stderr_tail.encode()) <= STDERR_TAIL_BYTES
    assert done.stderr_tail.endswith("line 1999\n")


def test_a_missing_program_raises() -> None:
    with pytest.raises(OSError):
        run_child(["/nonexistent/ffmpeg"], deadline=far(), cancel=threading.Event(), on_line=None)

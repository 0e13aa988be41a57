"""Fault injection, second part: faults that must not throw healthy work away.

A master paused past the node timeout, a PostgreSQL that stops, a planned master restart, an
agent killed mid-encode, a spool that cannot be written: each with real processes on
127.0.0.1, judged over the API like test_faults.py. Every attempt here is healthy, so every
job must complete in its first attempt (or say honestly why not).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from ffleet.agent.hardware import default_ffmpeg_path
from ffleet.agent.leftovers import RECORD
from tests.integration.conftest import Fleet
from tests.integration.test_faults import (
    BEAT,
    FINAL,
    SMALL,
    caught_mid_encode,
    fast_agent,
    fast_master,
    ffmpeg_using,
)
from tests.processes import MasterProcess, ffleet_executable, free_port, wait_until

pytestmark = pytest.mark.integration

# About 6-8 s of encoding here: still running when the fault is over.
LONG = {"duration": 150}
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def attempts_of(master: MasterProcess, job_id: str) -> list[tuple[int, str]]:
    return [(a["attempt"], a["outcome"]) for a in master.job(job_id)["attempts"]]


def node_of(master: MasterProcess, node_id: str | None) -> dict[str, object]:
    (node,) = [n for n in master.nodes() if n["id"] == node_id]
    return node


# ---------------------------------------------------------------------------- master stalls


def test_a_master_paused_past_the_node_timeout_ends_no_attempt(fleet: Fleet) -> None:
    master = fast_master(fleet)  # node timeout 2 s
    agent = fast_agent(fleet, master, "agent")
    job = master.submit(SMALL, parameters=LONG)
    master.wait_job(job["id"], ["running"], timeout=30)
    wait_until(agent.ffmpeg_pids, timeout=15, message="FFmpeg to start")

    master.send_signal(signal.SIGSTOP)
    time.sleep(5)  # 2.5 node timeouts: every lease and heartbeat looks expired
    master.send_signal(signal.SIGCONT)

    done = master.wait_job(job["id"], FINAL, timeout=60)
    assert done["status"] == "completed", done
    assert attempts_of(master, job["id"]) == [(1, "completed")]
    assert "the master did not run for" in master.log_text()
    assert node_of(master, agent.node_id)["status"] == "available"


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    """A throwaway PostgreSQL cluster on a free 127.0.0.1 port: (store URL, pg_ctl argv) so a
    test may stop and start it. Never the shared server."""
    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL 15 server binaries are not installed")
    data = Path(tempfile.mkdtemp(prefix="ffleet-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root
        shutil.chown(data, "postgres", "postgres")
        as_owner = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    initdb = [str(PG_BIN / "initdb"), "-D", str(data / "db"), "--auth=trust", "-U", "ffleet"]
    subprocess.run([*as_owner, *initdb], check=True, capture_output=True)
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={data}"
    pg_ctl = [*as_owner, str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-w"]
    start = [*pg_ctl, "-o", options, "-l", str(data / "server.log"), "start"]
    subprocess.run(start, check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://ffleet@127.0.0.1:{port}/postgres", start
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


def test_a_postgresql_outage_is_a_503_and_ends_no_attempt(
    fleet: Fleet, own_postgres: tuple[str, list[str]]
) -> None:
    url, start = own_postgres
    master = fleet.master(store=url, node_timeout="2s")
    agent = fast_agent(fleet, master, "agent")
    job = master.submit(SMALL, parameters=LONG)
    master.wait_job(job["id"], ["running"], timeout=30)
    assert master.api.get("/ready").json() == {"status": "ready", "store": "ok", "reason": None}

    stop = [*start[: start.index("-o")], "-m", "fast", "stop"]
    subprocess.run(stop, check=True, capture_output=True)
    try:
        ready = master.api.get("/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["store"] == "unavailable" and ready.json()["reason"]
        assert ready.headers["retry-after"]
        listing = master.api.get("/jobs")
        assert listing.status_code == 503, listing.text
        assert listing.json()["error"].startswith("store unavailable:")
        assert master.api.get("/health").status_code == 200  # liveness stays cheap
        # A command run meanwhile waits for the store instead of failing.
        waiting_cli = subprocess.Popen(
            [ffleet_executable(), "nodes", "--json", "--master", master.url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        time.sleep(4)  # two node timeouts of failed heartbeats
    finally:
        subprocess.run(start, check=True, capture_output=True)
    out, err = waiting_cli.communicate(timeout=60)
    assert waiting_cli.returncode == 0, err.decode()
    assert agent.node_id is not None and agent.node_id.encode() in out
    assert b"503" in err  # it said what it was waiting for

    done = master.wait_job(job["id"], FINAL, timeout=60)
    assert done["status"] == "completed", done
    assert attempts_of(master, job["id"]) == [(1, "completed")]
    assert master.api.get("/ready").status_code == 200
    log = master.log_text()
    assert log.count("store unavailable:") <= 3, log  # per change of condition, not per request
    assert "Traceback" not in log
    assert "store available again" in log
    assert not agent.undelivered(master)


# ---------------------------------------------------------------------------- planned stop


def test_sigterm_stops_the_master_at_once_and_ends_no_attempt(fleet: Fleet) -> None:
    master = fast_master(fleet)
    busy = fast_agent(fleet, master, "busy")
    job = master.submit(SMALL, parameters=LONG)
    master.wait_job(job["id"], ["running"], timeout=30)
    wait_until(busy.ffmpeg_pids, timeout=15, message="FFmpeg to start")
    fleet.agent(  # an idle agent whose long-poll waits on the master
        master, name="idle", heartbeat_interval=BEAT, extra_args=["--long-poll", "30s"]
    )
    time.sleep(1)  # the idle agent's long-poll is open now

    began = time.monotonic()
    master.send_signal(signal.SIGTERM)
    master.wait(timeout=10)
    took = time.monotonic() - began
    assert took < 3.0, f"SIGTERM took {took:.1f} s\n{master.log_tail()}"
    assert "1 waiting job request(s) answered" in master.log_text()

    master.start()  # same port, same database
    done = master.wait_job(job["id"], FINAL, timeout=60)
    assert done["status"] == "completed", done
    assert attempts_of(master, job["id"]) == [(1, "completed")]
    assert done["node_id"] == busy.node_id


# ---------------------------------------------------------------------------- killed agent


def test_ffmpeg_dies_with_its_agent_and_the_next_agent_cleans_up(fleet: Fleet) -> None:
    master, job, victim, other = caught_mid_encode(fleet)
    other.kill()  # the retry must run on the restarted victim
    (job_dir,) = [p.parent for p in (victim.work_dir / "jobs").glob(f"*/{RECORD}")]
    # What PR_SET_PDEATHSIG cannot reach: a process group recorded but left running.
    stray = subprocess.Popen(["sleep", "300"], start_new_session=True)
    created = psutil.Process(stray.pid).create_time()
    with (job_dir / RECORD).open("a") as record:
        record.write(f"{stray.pid} {created!r}\n")

    victim.kill()
    wait_until(
        lambda: not ffmpeg_using(victim.work_dir), timeout=5, message="FFmpeg to die with its agent"
    )
    assert job_dir.exists() and stray.poll() is None

    # The retry is measured beside another FFmpeg, and says so.
    neighbour = subprocess.Popen(
        [
            default_ffmpeg_path(),
            "-nostdin",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=64x64:rate=10",
            "-t",
            "60",
            "-f",
            "null",
            "-",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        victim.start()
        victim.wait_registered(master)
        assert stray.wait(timeout=5) == -signal.SIGKILL
        assert not job_dir.exists()
        log = victim.log_text()
        assert f"killed FFmpeg process group {stray.pid}" in log
        assert f"removed job dir {job_dir.name}" in log
        done = master.wait_job(job["id"], FINAL, timeout=60)
    finally:
        neighbour.kill()
        neighbour.wait()
        with contextlib.suppress(ProcessLookupError):
            stray.kill()
    assert done["status"] == "completed", done
    assert done["result"]["metrics"]["concurrent_ffmpeg"] >= 1


# ---------------------------------------------------------------------------- unwritable spool


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """No file can be created in `directory` meanwhile, even by root (immutable)."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(directory)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        return
    mode = directory.stat().st_mode
    directory.chmod(0o555)
    try:
        yield
    finally:
        directory.chmod(mode)


def test_an_unwritable_spool_claims_nothing_and_loses_no_result(fleet: Fleet) -> None:
    master = fast_master(fleet)
    agent = fast_agent(fleet, master, "agent")
    job = master.submit(SMALL, parameters=LONG)
    master.wait_job(job["id"], ["running"], timeout=30)
    with read_only(agent.work_dir / "spool"):
        node = wait_until(
            lambda: (n := node_of(master, agent.node_id))["status"] == "unhealthy" and n,
            timeout=10,
            message="the node to show as unhealthy",
        )
        assert "cannot be written" in str(node["problem"]), node
        master.kill()  # the result cannot go anywhere but the agent's memory
        wait_until(
            lambda: "held in memory" in agent.log_text(),
            timeout=60,
            message=lambda: f"the result to be held in memory\n{agent.log_tail()}",
        )
        master.start()
        done = master.wait_job(job["id"], FINAL, timeout=30)
        assert done["status"] == "completed", done
        assert attempts_of(master, job["id"]) == [(1, "completed")]
        waiting = master.submit(SMALL, parameters={"duration": 5})
        time.sleep(2)
        assert master.job(waiting["id"])["status"] == "pending"
    done = master.wait_job(waiting["id"], FINAL, timeout=30)
    assert done["status"] == "completed", done
    assert node_of(master, agent.node_id)["problem"] is None

"""Agent overhead: the same FFmpeg command bare and through `ffleet agent`, and an idle agent.

Issue 5's targets: FFmpeg through the agent takes ≤ 1.02x the wall time and ≤ 1.02x the CPU of
the same argv run bare; an idle agent (registered, long-polling an empty queue) uses ≤ 0.5% of
one core.

(a) One agent (`--register`, one slot, default 30 s heartbeat) runs the fleet benchmark's short
job once as a warm-up; its result's `metrics.ffmpeg_argv` is the exact command. Then N rounds of
three runs: the same job through the agent (its reported `wall_seconds` and `cpu_user_seconds +
cpu_system_seconds`, measured around its own FFmpeg child) and that argv run bare from this
process twice, series A and B (the output to a fresh temp file on the same filesystem as the
agent's work dir, stdout/stderr to /dev/null, wall from spawn to `os.wait4`, CPU = the child's
rusage user + system), with a 0.1 s pause after each run. The order within a round rotates so
that each run takes each place equally often, and drift hits all three alike. Bare and agent
FFmpeg get every core this suite may use. Figures are medians, the agent's against both bare
series; series B against series A (same command, both bare) shows how far apart two identical
series land on this machine in the same run: differences smaller than that are noise. The agent
process's own CPU per job (/proc/PID/stat deltas around each agent run, 10 ms ticks, so a mean)
is shown beside them.

(b) Two agents, one with the default 30 s heartbeat and one with 1 s, registered with a master
and long-polling an empty queue, plus a baseline Python process that only wakes every 0.2 s (as
the agent's main thread does to check for a stop request); the CPU of each over the same window
(30 s, after 2 s to settle; --quick 3 s after 1 s), from /proc/PID/stat: utime + stime of all
threads, children excluded (an idle agent starts none: their CPU is checked to stay 0).
Run: `.venv/bin/python -m bench.agent_overhead [--quick]`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import (
    ALL_CORES,
    Context,
    Figure,
    JobDetail,
    api_client,
    completed_details,
    job_detail,
    percentile,
    process_cpu_seconds,
    run_agents,
    run_master,
    run_standalone,
    submit_batch,
)
from bench.fleet_efficiency import JOB
from tests.processes import AgentProcess, epoch

TITLE = "Agent overhead: FFmpeg bare vs. through the agent, and an idle agent"
RATIO_TARGET = 1.02
IDLE_TARGET_PERCENT = 0.5
FFMPEG_TIMEOUT_S = 120.0  # one short encode, bare or through the agent
JOB_POLL_S = 0.02
# An agent's job is first looked at this many times the median bare wall so far after it was
# submitted, so that polling the master (and this process) stays off the cores while it runs.
EXPECTED_SHARE = 1.2
DEFAULT_HEARTBEAT = "30s"  # the agent's own default
# A pause after every run: once the master has a job's result, the agent still settles its spool
# and asks for the next job, and that tail must not fall into the next run's measurement.
BETWEEN_RUNS_S = 0.1
TICK_ARGV = [sys.executable, "-c", "import time\nwhile True:\n    time.sleep(0.2)"]


@dataclass(frozen=True)
class Run:
    """One FFmpeg run: wall from spawn to exit, and the child's user + system CPU."""

    wall_s: float
    cpu_s: float


@dataclass(frozen=True)
class AgentRun(Run):
    own_cpu_s: float  # the agent process's own CPU from submission to the job's end
    master_s: float  # the master's completed_at - started_at


@dataclass(frozen=True)
class Comparison:
    """Rounds of three runs: the agent's job and two bare runs, A and B (an A/A noise check)."""

    agent: list[AgentRun]
    bare_a: list[Run]
    bare_b: list[Run]

    @property
    def bare(self) -> list[Run]:
        return self.bare_a + self.bare_b


# ---------------------------------------------------------------------- (a) bare vs. agent


def _walls(runs: Sequence[Run]) -> list[float]:
    return [run.wall_s for run in runs]


def _cpus(runs: Sequence[Run]) -> list[float]:
    return [run.cpu_s for run in runs]


@contextlib.contextmanager
def all_cores() -> Iterator[None]:
    """This process on every core for the block, so a child started in it inherits them all
    (as the agent's FFmpeg does); the load generator's pinning is restored afterwards."""
    pinned = os.sched_getaffinity(0)
    os.sched_setaffinity(0, ALL_CORES)
    try:
        yield
    finally:
        os.sched_setaffinity(0, pinned)


def bare_argv(argv: Sequence[str], output: Path) -> list[str]:
    """The agent's argv writing to `output` instead (it ends with `-f <muxer> <path>`)."""
    if len(argv) < 3 or argv[-3] != "-f":
        raise RuntimeError(f"unexpected FFmpeg argv (no trailing -f FORMAT PATH): {argv}")
    return [*argv[:-1], str(output)]


def run_bare(argv: Sequence[str], out_dir: Path) -> Run:
    """Run the argv once as the agent would (own session, no stdin), measured like it does."""
    output = out_dir / f".ffleet-encode-{uuid.uuid4().hex}{Path(argv[-1]).suffix}"
    command = bare_argv(argv, output)
    try:
        with all_cores():
            started = time.monotonic()
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        watchdog = threading.Timer(FFMPEG_TIMEOUT_S, os.killpg, (proc.pid, signal.SIGKILL))
        watchdog.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.monotonic() - started
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        finally:
            watchdog.cancel()
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    finally:
        output.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"bare FFmpeg exited with {proc.returncode}: {command}")
    return Run(wall, usage.ru_utime + usage.ru_stime)


def wait_job(api: httpx.Client, job_id: str, expected_s: float) -> JobDetail:
    """The job's detail once it ended; the first look only after `expected_s`."""
    time.sleep(expected_s)
    deadline = time.monotonic() + FFMPEG_TIMEOUT_S
    while time.monotonic() < deadline:
        detail = job_detail(api, job_id)
        if detail["status"] not in ("pending", "running"):
            return detail
        time.sleep(JOB_POLL_S)
    raise RuntimeError(f"job {job_id} not done after {FFMPEG_TIMEOUT_S:g} s")


def run_through_agent(api: httpx.Client, agent: AgentProcess, expected_s: float) -> AgentRun:
    """One job through the agent, as the agent and the master measured it."""
    own = process_cpu_seconds(agent.pid)
    (job_id,) = submit_batch(api, [JOB])
    wait_job(api, job_id, expected_s)
    own = process_cpu_seconds(agent.pid) - own
    (detail,) = completed_details(api, [job_id])
    metrics = detail["result"]["metrics"]
    cpu = metrics["cpu_user_seconds"] + metrics["cpu_system_seconds"]
    master_s = epoch(detail["completed_at"]) - epoch(detail["started_at"])
    return AgentRun(metrics["wall_seconds"], cpu, own, master_s)


# The order of the three runs in each round, rotated so that each takes each place as often.
ORDERS = (("a", "agent", "b"), ("agent", "b", "a"), ("b", "a", "agent"))


def compare(ctx: Context, rounds: int) -> Comparison:
    """A warm-up job through the agent (its argv is the command) and a warm-up bare run, then
    `rounds` rounds of bare A, agent and bare B in rotating order."""
    out_dir = ctx.workdir / "bare-output"
    out_dir.mkdir(exist_ok=True)
    found = Comparison([], [], [])
    with (
        run_master(ctx) as master,
        run_agents(ctx, master, [DEFAULT_HEARTBEAT]) as (agent,),
        api_client(master) as api,
    ):
        (warm_up,) = submit_batch(api, [JOB])
        wait_job(api, warm_up, 0.0)
        (detail,) = completed_details(api, [warm_up])
        argv: list[str] = detail["result"]["metrics"]["ffmpeg_argv"]
        warm_bare = run_bare(argv, out_dir)
        for index in range(rounds):
            for step in ORDERS[index % len(ORDERS)]:
                if step == "agent":
                    walls = _walls(found.bare) or [warm_bare.wall_s]
                    expected_s = EXPECTED_SHARE * statistics.median(walls)
                    found.agent.append(run_through_agent(api, agent, expected_s))
                else:
                    (found.bare_a if step == "a" else found.bare_b).append(run_bare(argv, out_dir))
                time.sleep(BETWEEN_RUNS_S)
    print(f"  command: {' '.join(argv)}")
    return found


# ---------------------------------------------------------------------- (b) an idle agent


@dataclass(frozen=True)
class IdleCost:
    window_s: float
    percent: dict[str, float]  # of one core, over the window
    children_s: dict[str, float]  # CPU of reaped children over the window (agents only)


def idle(ctx: Context, window_s: float, settle_s: float) -> IdleCost:
    """The agents (30 s and 1 s heartbeat), the tick baseline and the master over one window."""
    with (
        run_master(ctx) as master,
        run_agents(ctx, master, [DEFAULT_HEARTBEAT, "1s"]) as (default, fast),
    ):
        tick = subprocess.Popen(TICK_ARGV, stdin=subprocess.DEVNULL)
        try:
            time.sleep(settle_s)  # start-up over, the first long-polls held
            pids = {
                "default": default.pid,
                "fast": fast.pid,
                "tick": tick.pid,
                "master": master.pid,
            }
            agents = {"default": default, "fast": fast}
            cpu = {name: process_cpu_seconds(pid) for name, pid in pids.items()}
            children = {
                name: process_cpu_seconds(agent.pid, children=True)
                for name, agent in agents.items()
            }
            started = time.monotonic()
            time.sleep(window_s)
            elapsed = time.monotonic() - started
            cpu = {name: process_cpu_seconds(pid) - cpu[name] for name, pid in pids.items()}
            children = {
                name: process_cpu_seconds(agent.pid, children=True) - children[name]
                for name, agent in agents.items()
            }
        finally:
            tick.kill()
            tick.wait()
    return IdleCost(elapsed, {name: 100 * s / elapsed for name, s in cpu.items()}, children)


# ---------------------------------------------------------------------- figures


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def _print_rounds(found: Comparison) -> None:
    """Each agent run against the two bare runs of its own round (the tightest pairing)."""
    rounds = list(zip(found.agent, found.bare_a, found.bare_b, strict=True))
    for name, value in (("wall", _walls), ("CPU", _cpus)):
        ratios = [value([g])[0] / statistics.mean(value([a, b])) for g, a, b in rounds]
        print(
            f"  {name}, agent ÷ mean of its round's two bare runs: median {_median(ratios):.3f}"
            f" (p10 {percentile(ratios, 10):.3f}, p90 {percentile(ratios, 90):.3f})"
        )
    for label, runs in (("bare A", found.bare_a), ("agent", found.agent), ("bare B", found.bare_b)):
        print(f"  {label} wall s: " + " ".join(f"{run.wall_s:.3f}" for run in runs))


def comparison_figures(found: Comparison) -> list[Figure]:
    _print_rounds(found)
    count = len(found.agent)
    bare_wall, bare_cpu = _median(_walls(found.bare)), _median(_cpus(found.bare))
    agent_wall, agent_cpu = _median(_walls(found.agent)), _median(_cpus(found.agent))
    own_ms = statistics.mean(run.own_cpu_s for run in found.agent) * 1000
    master_s = _median([run.master_s for run in found.agent])
    print(
        f"  ratios of medians: wall {agent_wall / bare_wall:.3f}, CPU {agent_cpu / bare_cpu:.3f};"
        f" noise check (bare B ÷ bare A): wall "
        f"{_median(_walls(found.bare_b)) / _median(_walls(found.bare_a)):.3f}, CPU "
        f"{_median(_cpus(found.bare_b)) / _median(_cpus(found.bare_a)):.3f}"
    )
    bare = f"bare, same argv ({2 * count} runs)"
    target = f"≤ {RATIO_TARGET:.2f}x"
    measures = (("wall", _walls), ("CPU", _cpus))
    return [
        *(
            Figure(
                f"FFmpeg {name} through the agent (median of {count})",
                _median(of(found.agent)),
                "s",
                _median(of(found.bare)),
                bare,
                target=target,
                ok=_median(of(found.agent)) <= RATIO_TARGET * _median(of(found.bare)),
            )
            for name, of in measures
        ),
        *(
            Figure(
                f"noise check: bare {name}, series B (median of {count})",
                _median(of(found.bare_b)),
                "s",
                _median(of(found.bare_a)),
                "bare series A",
            )
            for name, of in measures
        ),
        Figure(
            "agent process's own CPU per job (mean)",
            own_ms,
            "ms",
            bare_cpu * 1000,
            "bare FFmpeg CPU",
        ),
        Figure(
            f"master job time, claim -> result accepted (median of {count})",
            master_s,
            "s",
            bare_wall,
            "bare FFmpeg wall",
        ),
    ]


def idle_figures(cost: IdleCost) -> list[Figure]:
    window = f"{cost.window_s:.0f} s"
    for name, seconds in cost.children_s.items():
        if seconds:
            print(f"  warning: the {name} agent's children used {seconds:.2f} s of CPU while idle")
    print(f"  master over the same window: {cost.percent['master']:.2f} % of a core")
    target = f"≤ {IDLE_TARGET_PERCENT:g}"
    return [
        Figure(
            f"idle agent CPU, heartbeat 30 s (default), over {window}",
            cost.percent["default"],
            "% core",
            cost.percent["tick"],
            "Python waking 5x/s",
            target=target,
            ok=cost.percent["default"] <= IDLE_TARGET_PERCENT,
        ),
        Figure(
            f"idle agent CPU, heartbeat 1 s, over {window}",
            cost.percent["fast"],
            "% core",
            cost.percent["default"],
            "heartbeat 30 s",
            target=target,
            ok=cost.percent["fast"] <= IDLE_TARGET_PERCENT,
        ),
    ]


def run(ctx: Context) -> list[Figure]:
    found = compare(ctx, ctx.size(30, 2))
    figures = comparison_figures(found)
    cost = idle(ctx, window_s=ctx.size(30.0, 3.0), settle_s=ctx.size(2.0, 1.0))
    return figures + idle_figures(cost)


if __name__ == "__main__":
    run_standalone(TITLE, __doc__, run)

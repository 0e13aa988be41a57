"""The agent's settings: one validated object, the only place its defaults are written.

`ffleet agent` builds it from its flags (each with an FFLEET_* twin) and reads its defaults
from it; the running `Agent` reads nothing else. A value that cannot work is refused when the
object is built.

The agent cannot know its master's node timeout, so the rule that ties them, a heartbeat at
most every half node timeout, is documented, not checked (see ffleet.master.settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ffleet.settings import DEFAULT_MASTER_URL, require, require_positive

MAX_SLOTS = 256  # what a master accepts in a registration


@dataclass(frozen=True)
class AgentSettings:
    master_url: str = DEFAULT_MASTER_URL
    work_dir: Path = Path("ffleet-agent")
    labels: Mapping[str, str] = field(default_factory=dict)
    slots: int = 1
    poll_interval_s: float = 10.0  # between job requests when the master does not long-poll
    heartbeat_interval_s: float = 30.0
    # While a job runs, beats come this often: its progress reaches the master, and a cancel
    # reaches FFmpeg, within about this long. An idle agent beats at heartbeat_interval_s.
    progress_interval_s: float = 1.0
    grace_s: float = 30.0
    input_dirs: tuple[Path, ...] = ()
    long_poll_s: float = 30.0  # a poll's wait at the master for work, and a result's
    allowed_output_hosts: tuple[str, ...] = ()  # hosts jobs may stream to; none by default
    max_job_memory_mib: int = 0  # 0: 80% of this machine's memory
    min_free_disk_mib: int = 1024  # free space a job's encoded file must leave in the work dir
    # Registers a new node, which then gets (and keeps in the work dir) its own credential.
    enroll_token: str | None = field(default=None, repr=False)
    cache_bytes: int = 20 * 1024**3  # input blobs kept for later jobs, least recently used out
    kept_output_bytes: int = 10 * 1024**3  # outputs the master could not take yet
    metrics_port: int | None = None  # None: no metrics endpoint
    metrics_host: str = "127.0.0.1"  # the endpoint has no authentication: loopback by default

    def __post_init__(self) -> None:
        require(
            1 <= self.slots <= MAX_SLOTS,
            f"--slots must be between 1 and {MAX_SLOTS} (got {self.slots})",
        )
        require_positive("--poll-interval", self.poll_interval_s)
        require_positive("--heartbeat-interval", self.heartbeat_interval_s)
        require_positive("--progress-interval", self.progress_interval_s)
        # Zero would ask the master to answer at once and then ask again at once: a busy loop.
        require_positive("--long-poll", self.long_poll_s)
        require(self.grace_s >= 0, "--grace must not be negative")
        require(self.max_job_memory_mib >= 0, "--max-job-memory must not be negative")
        require(self.min_free_disk_mib >= 0, "--min-free-disk must not be negative")
        require(self.cache_bytes > 0, "--cache-bytes must be more than 0")
        require(self.kept_output_bytes >= 0, "--kept-output-bytes must not be negative")
        require(
            self.metrics_port is None or 0 < self.metrics_port < 65536,
            f"--metrics-port must be between 1 and 65535 (got {self.metrics_port})",
        )
        require(bool(self.metrics_host), "--metrics-host must not be empty")

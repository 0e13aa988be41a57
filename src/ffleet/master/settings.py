"""The master's settings: one validated object, the only place its defaults are written.

`ffleet master` builds it from its flags (each with an FFLEET_* twin) and reads its defaults
from it. A value that cannot work is refused when the object is built.

The master cannot know its agents' heartbeat intervals (nor they its node timeout), so the rule
that ties them, a heartbeat at most every half node timeout, is documented, not checked: each
process refuses only what it can see itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ffleet.durations import format_duration
from ffleet.policy import SchedulingPolicy
from ffleet.settings import DEFAULT_HOST, DEFAULT_PORT, require, require_positive

AUTH_MODES = ("auto", "required")


@dataclass(frozen=True)
class MasterSettings:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    store_url: str = "sqlite:///ffleet.db"
    policy: SchedulingPolicy = field(default_factory=SchedulingPolicy)
    reap_interval_s: float = 1.0
    max_body_bytes: int = 1024 * 1024
    max_wait_s: float = 60.0  # longest long-poll a client may ask for; 0: answer at once
    # With PostgreSQL a long-poll re-tries its claim this often even unwoken: the safety net
    # for work another master created whose wake-up was lost. On SQLite this master is the
    # only one and hears of all work, so a waiter looks again only when woken.
    recheck_s: float = 5.0
    # An idle connection stays open this long. Well above every client's pause between two
    # requests: a client that reuses a connection just as the server closes it gets a reset.
    keep_alive_s: float = 75.0
    # Limits that keep one client from hurting the rest (README: Limits).
    max_batch: int = 5000  # jobs in one POST /jobs/batch
    max_queued_jobs: int = 100_000  # pending jobs in all; past it submissions get 429
    max_job_pixels: float = 3840 * 2160 * 60 * 3600.0  # width x height x fps x duration: 4K60, 1 h
    max_attempts: int = 10  # most attempts a job may ask for
    rate_limit: float = 100.0  # requests per second per credential, else address; 0: none
    rate_burst: int = 400  # requests a client may send at once before the rate applies
    # Enough for 10,000 agents: each holds a long-poll, and a second connection for its
    # heartbeats and results.
    max_long_polls: int = 12_000  # waiting job requests in all
    max_long_polls_per_node: int = 64
    max_connections: int = 25_000  # open connections; past it requests get 503 + Retry-After
    header_timeout_s: float = 10.0  # a client must send its request headers within this
    body_timeout_s: float = 30.0  # ... and each part of its body within this
    # The leader lease: a leader that dies is replaced within this long (renewed every third).
    leader_lease_s: float = 10.0
    auth: str = "auto"  # auto: on when the store holds credentials; required: always
    insecure: bool = False  # serve a non-loopback address open, on purpose
    insecure_warn_s: float = 300.0  # how often an --insecure master repeats its warning
    admin_token_file: Path = Path("ffleet-admin-token")  # where a first admin token is written
    audit_retention_s: float = 30 * 86400.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None  # with it, clients must present a certificate it signed
    blob_dir: Path | None = None  # None: beside the SQLite database (see `blob_root`)
    max_blob_bytes: int = 100 * 1024**3
    blob_retention_s: float = 7 * 24 * 3600.0  # a blob neither written nor read this long goes

    @property
    def blob_root(self) -> Path:
        """`--blob-dir`, else `<database>-blobs` beside a SQLite file, else `ffleet-blobs`."""
        if self.blob_dir is not None:
            return self.blob_dir
        if self.store_url.startswith("sqlite:///"):
            database = Path(self.store_url.removeprefix("sqlite:///"))
            return database.with_name(f"{database.stem}-blobs")
        return Path("ffleet-blobs")

    victoriametrics_url: str | None = None  # where completed results' figures are pushed

    def __post_init__(self) -> None:
        policy = self.policy
        require(bool(self.host), "--host must not be empty")
        require(0 < self.port < 65536, f"--port must be between 1 and 65535 (got {self.port})")
        require_positive("--node-timeout", policy.node_timeout_s)
        require_positive("--max-job-timeout", policy.max_job_timeout_s)
        require_positive("--backoff-base", policy.backoff_base_s)
        require(
            policy.backoff_cap_s >= policy.backoff_base_s,
            f"--backoff-cap ({format_duration(policy.backoff_cap_s)}) must be at least "
            f"--backoff-base ({format_duration(policy.backoff_base_s)})",
        )
        require_positive("--aging-interval", policy.aging_interval_s)
        require_positive("--reap-interval", self.reap_interval_s)
        require(
            self.reap_interval_s <= policy.node_timeout_s / 2,
            f"--reap-interval ({format_duration(self.reap_interval_s)}) must be at most half "
            f"of --node-timeout ({format_duration(policy.node_timeout_s)}), so that a silent "
            "node is noticed within one and a half node timeouts",
        )
        require(self.max_body_bytes > 0, "--max-body-bytes must be more than 0")
        require(self.max_wait_s >= 0, "--max-wait must not be negative")
        require_positive("--recheck-interval", self.recheck_s)
        require_positive("--keep-alive", self.keep_alive_s)
        for flag, count in (
            ("--max-batch", self.max_batch),
            ("--max-queued-jobs", self.max_queued_jobs),
            ("--max-attempts", self.max_attempts),
            ("--rate-burst", self.rate_burst),
            ("--max-long-polls", self.max_long_polls),
            ("--max-long-polls-per-node", self.max_long_polls_per_node),
            ("--max-connections", self.max_connections),
        ):
            require(count >= 1, f"{flag} must be at least 1 (got {count})")
        require(self.max_job_pixels > 0, "--max-job-pixels must be more than 0")
        require(self.rate_limit >= 0, "--rate-limit must not be negative (0 turns it off)")
        require_positive("--header-timeout", self.header_timeout_s)
        require_positive("--body-timeout", self.body_timeout_s)
        require_positive("--leader-lease", self.leader_lease_s)
        require(self.auth in AUTH_MODES, f"--auth must be one of {', '.join(AUTH_MODES)}")
        require(
            not (self.insecure and self.auth == "required"),
            "--insecure and --auth required contradict each other",
        )
        require_positive("--insecure-warn-interval", self.insecure_warn_s)
        require_positive("--audit-retention", self.audit_retention_s)
        require(
            (self.tls_cert is None) == (self.tls_key is None),
            "--tls-cert and --tls-key go together",
        )
        require(
            self.tls_client_ca is None or self.tls_cert is not None,
            "--tls-client-ca needs --tls-cert and --tls-key",
        )
        require(self.max_blob_bytes > 0, "--max-blob-bytes must be more than 0")
        require_positive("--blob-retention", self.blob_retention_s)
        require(
            self.victoriametrics_url is None
            or self.victoriametrics_url.startswith(("http://", "https://")),
            f"--victoriametrics-url must be an http:// or https:// URL "
            f"(got {self.victoriametrics_url!r})",
        )

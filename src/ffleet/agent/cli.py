"""`ffleet agent`: detect this machine, and with `--register` serve a master until stopped.

Every flag has an FFLEET_* environment twin, so a systemd unit or container can configure an
agent without a command line; every default is read from `AgentSettings`, which also refuses,
before anything starts, a value that cannot work. SIGTERM and SIGINT stop it cleanly (exit 0):
running jobs get the grace period, then are handed back to the master; a second signal skips
the grace.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from ffleet.agent.settings import MAX_SLOTS, AgentSettings
from ffleet.cli_support import (
    DEFAULT_LOG_LEVEL,
    CaOption,
    CertOption,
    KeyOption,
    LogLevelOption,
    Seconds,
    TokenOption,
    checked,
    configure_logging,
    duration_option,
    parse_pairs,
    transport,
)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
AGENT_DEFAULTS = AgentSettings()


def _err(message: str) -> None:
    typer.echo(message, err=True)


def agent(
    master: Annotated[
        str,
        typer.Option(
            envvar="FFLEET_MASTER",
            help="URL of the master to work for; URL1,URL2,... for several masters sharing one "
            "database: the agent stays with one and fails over to the next.",
        ),
    ] = AGENT_DEFAULTS.master_url,
    register: Annotated[
        bool,
        typer.Option(
            envvar="FFLEET_REGISTER",
            help="Register with the master and run jobs. Without it: print the detected "
            "hardware and exit.",
        ),
    ] = False,
    poll_interval: Annotated[
        float,
        duration_option(
            "FFLEET_POLL_INTERVAL",
            "Pause between job requests when the master is unreachable or does not long-poll.",
        ),
    ] = Seconds(AGENT_DEFAULTS.poll_interval_s),
    heartbeat_interval: Annotated[
        float,
        duration_option(
            "FFLEET_HEARTBEAT_INTERVAL",
            "How often to report liveness and progress: at most half of the master's "
            "--node-timeout (the agent cannot check that).",
        ),
    ] = Seconds(AGENT_DEFAULTS.heartbeat_interval_s),
    progress_interval: Annotated[
        float,
        duration_option(
            "FFLEET_PROGRESS_INTERVAL",
            "While a job runs, how often to report its progress (and so hear of a cancel); "
            "an idle agent beats at --heartbeat-interval only.",
        ),
    ] = Seconds(AGENT_DEFAULTS.progress_interval_s),
    long_poll: Annotated[
        float,
        duration_option(
            "FFLEET_LONG_POLL",
            "How long one job request (a poll, or a result asking for the next job) waits at "
            "the master for work (the master caps it at its --max-wait).",
        ),
    ] = Seconds(AGENT_DEFAULTS.long_poll_s),
    allow_master_as_worker: Annotated[
        bool,
        typer.Option(
            envvar="FFLEET_ALLOW_MASTER_AS_WORKER",
            help="Allow running on the master's own machine (development only).",
        ),
    ] = False,
    yes: Annotated[
        bool,
        typer.Option(
            "--yes",
            "-y",
            envvar="FFLEET_YES",
            help="Confirm --allow-master-as-worker without asking.",
        ),
    ] = False,
    ffmpeg: Annotated[
        str | None,
        typer.Option(
            envvar="FFLEET_FFMPEG",
            help="FFmpeg binary to use (default: the one bundled with imageio-ffmpeg).",
        ),
    ] = None,
    work_dir: Annotated[
        Path,
        typer.Option(
            envvar="FFLEET_WORK_DIR",
            help="Where the node id, the result spool and job files live.",
        ),
    ] = AGENT_DEFAULTS.work_dir,
    label: Annotated[
        list[str] | None,
        typer.Option(
            envvar="FFLEET_LABEL",
            help="A KEY=VALUE label for scheduling constraints (repeatable).",
        ),
    ] = None,
    slots: Annotated[
        int,
        typer.Option(
            envvar="FFLEET_SLOTS",
            help=f"Jobs run at once, 1 to {MAX_SLOTS} (more than 1 disturbs benchmark "
            "measurements).",
        ),
    ] = AGENT_DEFAULTS.slots,
    grace: Annotated[
        float,
        duration_option(
            "FFLEET_GRACE",
            "On SIGTERM/SIGINT, how long running jobs may finish before they are stopped "
            "and handed back.",
        ),
    ] = Seconds(AGENT_DEFAULTS.grace_s),
    input_dir: Annotated[
        list[Path] | None,
        typer.Option(
            envvar="FFLEET_INPUT_DIR",
            help="A directory jobs may read input files from (repeatable; none by default).",
        ),
    ] = None,
    allow_output_host: Annotated[
        list[str] | None,
        typer.Option(
            envvar="FFLEET_ALLOW_OUTPUT_HOST",
            help="A host jobs may stream their output to (repeatable; none by default).",
        ),
    ] = None,
    max_job_memory: Annotated[
        int,
        typer.Option(
            envvar="FFLEET_MAX_JOB_MEMORY",
            metavar="MIB",
            help="Most memory one job may be expected to need, in MiB (0: 80% of this "
            "machine's); larger jobs are refused and retried elsewhere.",
        ),
    ] = AGENT_DEFAULTS.max_job_memory_mib,
    min_free_disk: Annotated[
        int,
        typer.Option(
            envvar="FFLEET_MIN_FREE_DISK",
            metavar="MIB",
            help="Free MiB a job's encoded file must leave in the work dir.",
        ),
    ] = AGENT_DEFAULTS.min_free_disk_mib,
    enroll_token: Annotated[
        str | None,
        typer.Option(
            envvar="FFLEET_ENROLL_TOKEN",
            help="Enrollment token: registers this node, which gets its own credential "
            "(kept in the work dir, mode 0600, and used from then on).",
        ),
    ] = None,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    cache_bytes: Annotated[
        int,
        typer.Option(
            envvar="FFLEET_CACHE_BYTES",
            help="Disk the input-blob cache may use in the work dir (least recently used out).",
        ),
    ] = AGENT_DEFAULTS.cache_bytes,
    kept_output_bytes: Annotated[
        int,
        typer.Option(
            envvar="FFLEET_KEPT_OUTPUT_BYTES",
            help="Disk for outputs the master could not take yet (oldest removed past it).",
        ),
    ] = AGENT_DEFAULTS.kept_output_bytes,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="FFLEET_METRICS_PORT",
            help="Serve Prometheus metrics on this port (off unless given).",
        ),
    ] = AGENT_DEFAULTS.metrics_port,
    metrics_host: Annotated[
        str,
        typer.Option(
            envvar="FFLEET_METRICS_HOST",
            help="Address the metrics port binds to (it has no authentication).",
        ),
    ] = AGENT_DEFAULTS.metrics_host,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", envvar="FFLEET_JSON", help="Print the detected hardware as JSON instead."
        ),
    ] = False,
    log_level: LogLevelOption = DEFAULT_LOG_LEVEL,
) -> None:
    """Run an agent: detect hardware, register with the master, run FFmpeg jobs."""
    import ssl

    from ffleet.agent.client import MasterClient
    from ffleet.agent.exporter import ExporterError
    from ffleet.agent.failover import master_urls
    from ffleet.agent.hardware import detect_hardware, format_summary
    from ffleet.agent.runner import Agent, AgentError
    from ffleet.agent.safety import (
        MasterAsWorkerRefused,
        confirm_master_as_worker,
        master_is_local,
    )

    try:
        master = ",".join(master_urls(master))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--master") from None
    settings = checked(
        lambda: AgentSettings(
            master_url=master,
            work_dir=work_dir,
            labels=parse_pairs(label or [], "--label"),
            slots=slots,
            poll_interval_s=poll_interval,
            heartbeat_interval_s=heartbeat_interval,
            progress_interval_s=progress_interval,
            long_poll_s=long_poll,
            grace_s=grace,
            input_dirs=tuple(input_dir or ()),
            allowed_output_hosts=tuple(allow_output_host or ()),
            max_job_memory_mib=max_job_memory,
            min_free_disk_mib=min_free_disk,
            enroll_token=enroll_token,
            cache_bytes=cache_bytes,
            kept_output_bytes=kept_output_bytes,
            metrics_port=metrics_port,
            metrics_host=metrics_host,
        )
    )
    via = transport(token, ca, cert, key)
    configure_logging(log_level)
    try:
        hardware = detect_hardware(ffmpeg)
    except RuntimeError as exc:  # no bundled FFmpeg for this platform
        _err(f"Cannot find FFmpeg: {exc}. Give one with --ffmpeg PATH.")
        raise typer.Exit(1) from None
    if as_json:
        import msgspec

        typer.echo(msgspec.json.format(msgspec.json.encode(hardware)).decode())
    else:
        typer.echo(format_summary(hardware))
    if not register:
        return
    if any(master_is_local(url) for url in master_urls(master)):
        try:
            confirm_master_as_worker(
                allow=allow_master_as_worker,
                assume_yes=yes,
                interactive=sys.stdin is not None and sys.stdin.isatty(),
                ask=input,
                out=_err,
            )
        except MasterAsWorkerRefused as exc:
            _err(str(exc))
            raise typer.Exit(1) from None
        labels = {**settings.labels, "master_as_worker": "true"}
        settings = dataclasses.replace(settings, labels=labels)
    try:
        client = MasterClient(master, via)
    except (OSError, ssl.SSLError) as exc:
        _err(f"Cannot load the TLS files: {exc}")
        raise typer.Exit(2) from None
    try:
        with client, Agent(settings, hardware, client) as worker:

            def on_signal(signum: int, frame: FrameType | None) -> None:
                worker.request_stop()

            previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
            try:
                if settings.metrics_port is None:
                    worker.run()
                else:
                    with worker.exporter.serving(settings.metrics_host, settings.metrics_port):
                        worker.run()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
    except (AgentError, ExporterError) as exc:
        _err(f"Error: {exc}")
        raise typer.Exit(1) from None

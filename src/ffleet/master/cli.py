"""`ffleet master`: serve the node registry, the job queue and the HTTP API until stopped.

Every flag has an FFLEET_* environment twin; every default is read from `MasterSettings`, which
also refuses, before anything starts, a combination that cannot work.
"""

from __future__ import annotations

import logging
import ssl
from pathlib import Path
from typing import Annotated

import typer

from ffleet.cli_support import (
    DEFAULT_LOG_LEVEL,
    LogLevelOption,
    Seconds,
    checked,
    configure_logging,
    duration_option,
)
from ffleet.master.settings import MasterSettings
from ffleet.policy import SchedulingPolicy

MASTER_DEFAULTS = MasterSettings()


def master(
    host: Annotated[str, typer.Option(envvar="FFLEET_HOST", help="Address to listen on.")] = (
        MASTER_DEFAULTS.host
    ),
    port: Annotated[
        int, typer.Option(envvar="FFLEET_PORT", help="TCP port.")
    ] = MASTER_DEFAULTS.port,
    store: Annotated[
        str,
        typer.Option(
            envvar="FFLEET_STORE",
            help="Where state lives: memory (lost on restart), sqlite:///PATH, "
            "or postgresql://USER@HOST/DB (a password: use FFLEET_STORE or --store-file).",
        ),
    ] = MASTER_DEFAULTS.store_url,
    store_file: Annotated[
        Path | None,
        typer.Option(
            envvar="FFLEET_STORE_FILE",
            help="Read the store URL from this file instead, so that a password stays out of "
            "the command line (which `ps` shows every user).",
        ),
    ] = None,
    node_timeout: Annotated[
        float,
        duration_option(
            "FFLEET_NODE_TIMEOUT",
            "A node silent this long is offline and its running attempts end. Keep every "
            "agent's --heartbeat-interval at most half of it (the master cannot check that).",
        ),
    ] = Seconds(MASTER_DEFAULTS.policy.node_timeout_s),
    max_job_timeout: Annotated[
        float, duration_option("FFLEET_MAX_JOB_TIMEOUT", "Cap on any job's timeout.")
    ] = Seconds(MASTER_DEFAULTS.policy.max_job_timeout_s),
    backoff_base: Annotated[
        float, duration_option("FFLEET_BACKOFF_BASE", "First retry delay (doubles).")
    ] = Seconds(MASTER_DEFAULTS.policy.backoff_base_s),
    backoff_cap: Annotated[
        float, duration_option("FFLEET_BACKOFF_CAP", "Longest retry delay.")
    ] = Seconds(MASTER_DEFAULTS.policy.backoff_cap_s),
    aging_interval: Annotated[
        float,
        duration_option(
            "FFLEET_AGING_INTERVAL",
            "A waiting job gains one priority step per interval while better work waits.",
        ),
    ] = Seconds(MASTER_DEFAULTS.policy.aging_interval_s),
    reap_interval: Annotated[
        float,
        duration_option(
            "FFLEET_REAP_INTERVAL",
            "How often expiry is checked (at most half of --node-timeout).",
        ),
    ] = Seconds(MASTER_DEFAULTS.reap_interval_s),
    max_body_bytes: Annotated[
        int, typer.Option(envvar="FFLEET_MAX_BODY_BYTES", help="Largest request body accepted.")
    ] = MASTER_DEFAULTS.max_body_bytes,
    max_wait: Annotated[
        float,
        duration_option(
            "FFLEET_MAX_WAIT",
            "Longest a job request may wait for work (long-poll); 0 answers at once.",
        ),
    ] = Seconds(MASTER_DEFAULTS.max_wait_s),
    recheck_interval: Annotated[
        float,
        duration_option(
            "FFLEET_RECHECK_INTERVAL",
            "With PostgreSQL, a waiting job request looks for work this often even unwoken: "
            "the fallback for work another master created when its wake-up (LISTEN/NOTIFY) "
            "is lost (on SQLite the master hears of all work).",
        ),
    ] = Seconds(MASTER_DEFAULTS.recheck_s),
    keep_alive: Annotated[
        float,
        duration_option(
            "FFLEET_KEEP_ALIVE",
            "How long an idle HTTP connection stays open; keep it well above every client's "
            "pause between requests (the agents' --heartbeat-interval).",
        ),
    ] = Seconds(MASTER_DEFAULTS.keep_alive_s),
    max_batch: Annotated[
        int, typer.Option(envvar="FFLEET_MAX_BATCH", help="Most jobs in one batch request.")
    ] = MASTER_DEFAULTS.max_batch,
    max_queued_jobs: Annotated[
        int,
        typer.Option(
            envvar="FFLEET_MAX_QUEUED_JOBS",
            help="Most pending jobs in all; past it submissions get 429.",
        ),
    ] = MASTER_DEFAULTS.max_queued_jobs,
    max_job_pixels: Annotated[
        float,
        typer.Option(
            envvar="FFLEET_MAX_JOB_PIXELS",
            help="Largest width x height x fps x duration one job may encode (default: 4K "
            "at 60 fps for an hour).",
        ),
    ] = MASTER_DEFAULTS.max_job_pixels,
    max_attempts: Annotated[
        int,
        typer.Option(envvar="FFLEET_MAX_ATTEMPTS", help="Most attempts a job may ask for."),
    ] = MASTER_DEFAULTS.max_attempts,
    rate_limit: Annotated[
        float,
        typer.Option(
            envvar="FFLEET_RATE_LIMIT",
            help="Requests per second one client address may send (loopback is not "
            "limited); past it 429 with Retry-After. 0 turns it off.",
        ),
    ] = MASTER_DEFAULTS.rate_limit,
    rate_burst: Annotated[
        int,
        typer.Option(
            envvar="FFLEET_RATE_BURST",
            help="Requests a client may send at once before --rate-limit applies.",
        ),
    ] = MASTER_DEFAULTS.rate_burst,
    max_long_polls: Annotated[
        int,
        typer.Option(envvar="FFLEET_MAX_LONG_POLLS", help="Most job requests waiting at once."),
    ] = MASTER_DEFAULTS.max_long_polls,
    max_long_polls_per_node: Annotated[
        int,
        typer.Option(
            envvar="FFLEET_MAX_LONG_POLLS_PER_NODE", help="Most waiting job requests of one node."
        ),
    ] = MASTER_DEFAULTS.max_long_polls_per_node,
    max_connections: Annotated[
        int,
        typer.Option(
            envvar="FFLEET_MAX_CONNECTIONS",
            help="Most open connections; past it requests get 503 + Retry-After.",
        ),
    ] = MASTER_DEFAULTS.max_connections,
    header_timeout: Annotated[
        float,
        duration_option(
            "FFLEET_HEADER_TIMEOUT", "A client must send its request headers within this."
        ),
    ] = Seconds(MASTER_DEFAULTS.header_timeout_s),
    body_timeout: Annotated[
        float,
        duration_option(
            "FFLEET_BODY_TIMEOUT", "Each part of a request body must arrive within this (else 408)."
        ),
    ] = Seconds(MASTER_DEFAULTS.body_timeout_s),
    leader_lease: Annotated[
        float,
        duration_option(
            "FFLEET_LEADER_LEASE",
            "Masters sharing one PostgreSQL elect one leader (reaper, aging, retention) "
            "through a lease of this length: a dead leader is replaced within it.",
        ),
    ] = Seconds(MASTER_DEFAULTS.leader_lease_s),
    auth: Annotated[
        str,
        typer.Option(
            envvar="FFLEET_AUTH",
            help="auto: tokens required once the store holds credentials (an address other "
            "than loopback needs them); required: always, creating an admin token on first "
            "start.",
        ),
    ] = MASTER_DEFAULTS.auth,
    insecure: Annotated[
        bool,
        typer.Option(
            envvar="FFLEET_INSECURE",
            help="Serve without authentication even on a reachable address (warns).",
        ),
    ] = MASTER_DEFAULTS.insecure,
    insecure_warn_interval: Annotated[
        float,
        duration_option(
            "FFLEET_INSECURE_WARN_INTERVAL", "How often an --insecure master repeats its warning."
        ),
    ] = Seconds(MASTER_DEFAULTS.insecure_warn_s),
    admin_token_file: Annotated[
        Path,
        typer.Option(
            envvar="FFLEET_ADMIN_TOKEN_FILE",
            help="Where a first start with authentication writes the admin token (mode 0600).",
        ),
    ] = MASTER_DEFAULTS.admin_token_file,
    audit_retention: Annotated[
        float, duration_option("FFLEET_AUDIT_RETENTION", "Audit entries are kept this long.")
    ] = Seconds(MASTER_DEFAULTS.audit_retention_s),
    tls_cert: Annotated[
        Path | None,
        typer.Option(envvar="FFLEET_TLS_CERT", help="Serve HTTPS with this certificate (PEM)."),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(envvar="FFLEET_TLS_KEY", help="The private key of --tls-cert (PEM)."),
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            envvar="FFLEET_TLS_CLIENT_CA",
            help="mTLS: refuse every client without a certificate signed by this CA.",
        ),
    ] = None,
    blob_dir: Annotated[
        Path | None,
        typer.Option(
            envvar="FFLEET_BLOB_DIR",
            help="Where uploaded inputs and job outputs are kept, named by SHA-256 (default: "
            "<database>-blobs beside a SQLite store, else ./ffleet-blobs).",
        ),
    ] = MASTER_DEFAULTS.blob_dir,
    max_blob_bytes: Annotated[
        int, typer.Option(envvar="FFLEET_MAX_BLOB_BYTES", help="Largest blob an upload may be.")
    ] = MASTER_DEFAULTS.max_blob_bytes,
    blob_retention: Annotated[
        float,
        duration_option(
            "FFLEET_BLOB_RETENTION", "A blob neither uploaded nor read this long is deleted."
        ),
    ] = Seconds(MASTER_DEFAULTS.blob_retention_s),
    victoriametrics_url: Annotated[
        str | None,
        typer.Option(
            "--victoriametrics-url",
            envvar="FFLEET_VICTORIAMETRICS_URL",
            help="Push every completed result's figures to this VictoriaMetrics server "
            "(e.g. http://127.0.0.1:8428); off unless given.",
        ),
    ] = MASTER_DEFAULTS.victoriametrics_url,
    log_level: LogLevelOption = DEFAULT_LOG_LEVEL,
) -> None:
    """Run the master: node registry, job queue and HTTP API."""
    from ffleet.master.app import create_app
    from ffleet.master.exposure import StartRefused
    from ffleet.master.serve import serve
    from ffleet.store import redact_url

    if store_file is not None:
        try:
            store = store_file.read_text().strip()
        except OSError as exc:
            raise typer.BadParameter(str(exc), param_hint="--store-file") from None
    settings = checked(
        lambda: MasterSettings(
            host=host,
            port=port,
            store_url=store,
            policy=SchedulingPolicy(
                node_timeout_s=node_timeout,
                max_job_timeout_s=max_job_timeout,
                backoff_base_s=backoff_base,
                backoff_cap_s=backoff_cap,
                aging_interval_s=aging_interval,
            ),
            reap_interval_s=reap_interval,
            max_body_bytes=max_body_bytes,
            max_wait_s=max_wait,
            recheck_s=recheck_interval,
            keep_alive_s=keep_alive,
            max_batch=max_batch,
            max_queued_jobs=max_queued_jobs,
            max_job_pixels=max_job_pixels,
            max_attempts=max_attempts,
            rate_limit=rate_limit,
            rate_burst=rate_burst,
            max_long_polls=max_long_polls,
            max_long_polls_per_node=max_long_polls_per_node,
            max_connections=max_connections,
            header_timeout_s=header_timeout,
            body_timeout_s=body_timeout,
            leader_lease_s=leader_lease,
            auth=auth,
            insecure=insecure,
            insecure_warn_s=insecure_warn_interval,
            admin_token_file=admin_token_file,
            audit_retention_s=audit_retention,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_client_ca=tls_client_ca,
            blob_dir=blob_dir,
            max_blob_bytes=max_blob_bytes,
            blob_retention_s=blob_retention,
            victoriametrics_url=victoriametrics_url,
        )
    )
    configure_logging(log_level)
    try:
        application = create_app(settings)
    except ValueError as exc:
        message = str(exc).replace(store, redact_url(store))  # a driver may quote the URL
        raise typer.BadParameter(message, param_hint="--store") from None
    except StartRefused as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    tls: dict[str, object] = {}
    if settings.tls_cert is not None:
        tls = {"ssl_certfile": str(settings.tls_cert), "ssl_keyfile": str(settings.tls_key)}
    if settings.tls_client_ca is not None:
        tls |= {"ssl_ca_certs": str(settings.tls_client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
    logging.getLogger("ffleet.master").info(
        "master listening on %s://%s:%d%s (store %s)",
        "https" if tls else "http",
        settings.host,
        settings.port,
        " with client certificates required" if settings.tls_client_ca else "",
        redact_url(settings.store_url),
    )
    serve(application, settings, log_level, tls)

"""The `ffleet` command line. Every flag has an FFLEET_* environment twin (shown in --help)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from ffleet.durations import parse_duration

app = typer.Typer(
    help="ffleet: run FFmpeg workloads across a fleet of machines and bring every result home.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def duration_option(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def master(
    host: Annotated[str, typer.Option(envvar="FFLEET_HOST", help="Address to listen on.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(envvar="FFLEET_PORT", help="TCP port.")] = 8080,
    store: Annotated[
        str,
        typer.Option(
            envvar="FFLEET_STORE",
            help="Where state lives: memory (lost on restart), sqlite:///PATH, "
            "or postgresql://USER@HOST/DB.",
        ),
    ] = "sqlite:///ffleet.db",
    node_timeout: Annotated[
        str,
        typer.Option(
            envvar="FFLEET_NODE_TIMEOUT",
            help="A node silent this long is offline and its running attempts end "
            "(default: 3 x the agents' 30s heartbeat).",
        ),
    ] = "90s",
    max_job_timeout: Annotated[
        str, typer.Option(envvar="FFLEET_MAX_JOB_TIMEOUT", help="Cap on any job's timeout.")
    ] = "6h",
    backoff_base: Annotated[
        str, typer.Option(envvar="FFLEET_BACKOFF_BASE", help="First retry delay (doubles).")
    ] = "2s",
    backoff_cap: Annotated[
        str, typer.Option(envvar="FFLEET_BACKOFF_CAP", help="Longest retry delay.")
    ] = "5m",
    aging_interval: Annotated[
        str,
        typer.Option(
            envvar="FFLEET_AGING_INTERVAL",
            help="A waiting job gains one priority step per interval while better work waits.",
        ),
    ] = "60s",
    reap_interval: Annotated[
        str, typer.Option(envvar="FFLEET_REAP_INTERVAL", help="How often expiry is checked.")
    ] = "1s",
    max_body_bytes: Annotated[
        int, typer.Option(envvar="FFLEET_MAX_BODY_BYTES", help="Largest request body accepted.")
    ] = 1024 * 1024,
    log_level: Annotated[str, typer.Option(envvar="FFLEET_LOG_LEVEL")] = "info",
) -> None:
    """Run the master: node registry, job queue and HTTP API."""
    import uvicorn

    from ffleet.master.app import create_app
    from ffleet.master.settings import MasterSettings
    from ffleet.store import SchedulingPolicy, redact_url

    configure_logging(log_level)
    policy = SchedulingPolicy(
        node_timeout_s=duration_option(node_timeout),
        max_job_timeout_s=duration_option(max_job_timeout),
        backoff_base_s=duration_option(backoff_base),
        backoff_cap_s=duration_option(backoff_cap),
        aging_interval_s=duration_option(aging_interval),
    )
    settings = MasterSettings(
        store_url=store,
        policy=policy,
        reap_interval_s=duration_option(reap_interval),
        max_body_bytes=max_body_bytes,
    )
    try:
        application = create_app(settings)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--store") from None
    logging.getLogger("ffleet.master").info(
        "master listening on http://%s:%d (store %s)", host, port, redact_url(store)
    )
    uvicorn.run(application, host=host, port=port, log_level=log_level.lower(), access_log=False)


def parse_pairs(items: list[str], flag: str) -> dict[str, str]:
    """`k=v` flags into a dict; a malformed one is a usage error naming the flag."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=flag)
        pairs[key.strip()] = value.strip()
    return pairs


def parameter_values(items: list[str]) -> dict[str, object]:
    """`--param duration=5` gives the number 5, as a JSON body would; other values stay text."""
    values: dict[str, object] = {}
    for key, text in parse_pairs(items, "--param").items():
        number: object = text
        for kind in (int, float):
            try:
                number = kind(text)
                break
            except ValueError:
                continue
        values[key] = number
    return values


ParamOption = Annotated[
    list[str],
    typer.Option("--param", "-p", help="Job parameter KEY=VALUE (repeatable), e.g. duration=5."),
]


@app.command()
def run(
    scenario: Annotated[str, typer.Argument(help="e.g. 720p-h264, 4K60-h265, 1280x720-av1")],
    param: ParamOption = [],  # noqa: B006 - typer reads the default, never mutates it
    ffmpeg: Annotated[
        str | None, typer.Option(envvar="FFLEET_FFMPEG", help="FFmpeg binary (default: bundled).")
    ] = None,
    timeout: Annotated[
        str | None, typer.Option(help="Hard limit (default: derived from the scenario).")
    ] = None,
) -> None:
    """Run one job on this machine, without a master, and print the result JSON."""
    import msgspec

    from ffleet.local_run import run_local
    from ffleet.scenarios import ScenarioError

    try:
        result = run_local(
            scenario,
            parameter_values(param),
            ffmpeg_path=ffmpeg,
            timeout_s=None if timeout is None else duration_option(timeout),
        )
    except ScenarioError as exc:
        raise typer.BadParameter(str(exc)) from None
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(msgspec.json.format(msgspec.json.encode(result)).decode())
    if result["status"] != "completed":
        raise typer.Exit(1)

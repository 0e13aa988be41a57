"""`ffleet token create|list|revoke` and `ffleet audit`: credentials and the trail, for admins.

Through the API with an admin token, or, with `--store URL`, straight on the master's store:
the way to bootstrap a fleet and to recover one whose admin token is lost. A revocation made
on the store reaches a running master within its credential cache time (ffleet.master.access).
On the store, times come from the database's clock, as the masters' do (ffleet.master.clock).
`token create` prints only the token on stdout, so `T=$(ffleet token create ...)` works.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Annotated

import typer

from ffleet.cli_support import (
    CaOption,
    CertOption,
    KeyOption,
    MasterOption,
    TokenOption,
    duration,
    parse_pairs,
)
from ffleet.master.clock import database_now
from ffleet.settings import DEFAULT_MASTER_URL
from ffleet.tokens import ISSUABLE, Credential, TokenRequest

if TYPE_CHECKING:
    from ffleet.store import Store

token_app = typer.Typer(help="Create, list and revoke API credentials.", no_args_is_help=True)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="FFLEET_STORE",
        help="Work on the master's store directly instead of through --master (bootstrap, "
        "recovery).",
    ),
]


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


@token_app.command("create")
def create(
    role: Annotated[str, typer.Option(envvar="FFLEET_ROLE", help=f"One of {', '.join(ISSUABLE)}.")],
    name: Annotated[str, typer.Option(envvar="FFLEET_NAME", help="What it is for.")] = "",
    expires: Annotated[
        float | None,
        typer.Option(
            envvar="FFLEET_EXPIRES",
            help="Valid this long (e.g. 30d); default: until revoked.",
            parser=duration,
            metavar="DURATION",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            envvar="FFLEET_LABEL",
            help="enroll: KEY=VALUE every node it enrolls gets (repeatable).",
        ),
    ] = None,
    one_time: Annotated[
        bool, typer.Option(envvar="FFLEET_ONE_TIME", help="enroll: good for one node only.")
    ] = False,
    store: StoreOption = None,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """Create a credential and print its token (shown this once)."""
    labels = parse_pairs(label, "--label") if label else None
    if role not in ISSUABLE:
        raise typer.BadParameter(f"use one of {', '.join(ISSUABLE)}", param_hint="--role")
    if (labels is not None or one_time) and role != "enroll":
        raise typer.BadParameter("--label and --one-time apply to --role enroll only")
    if store is not None:
        with _opened(store) as opened:
            now = database_now(opened)
            credential, secret = opened.create_credential(
                role,
                name,
                now,
                expires_at=None if expires is None else now + expires,
                labels=labels,
                one_time=one_time,
            )
    else:
        from ffleet.cli_support import fleet_client

        request = TokenRequest(
            role=role, name=name, expires_in_s=expires, labels=labels, one_time=one_time
        )
        with fleet_client(master, token, ca, cert, key) as client:
            issued = client.create_token(request)
        credential, secret = issued, issued.token
    typer.echo(
        f"created {credential.role} credential {credential.id} ({credential.name})", err=True
    )
    typer.echo(secret)


@token_app.command("list")
def list_(
    store: StoreOption = None,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """List credentials (never their tokens)."""
    found: list[Credential]
    now = time.time()  # through the API: this machine's clock, for the state column only
    if store is not None:
        with _opened(store) as opened:
            found = opened.list_credentials()
            now = database_now(opened)
    else:
        from ffleet.cli_support import fleet_client

        with fleet_client(master, token, ca, cert, key) as client:
            found = client.tokens()
    from ffleet.cli_support import show_table

    show_table(
        f"{len(found)} credential(s)",
        ("id", "name", "role", "node", "created", "expires", "state"),
        [
            (
                c.id,
                c.name,
                c.role,
                c.node_id or "-",
                _when(c.created_at),
                _when(c.expires_at),
                "usable" if c.usable(now) else ("revoked" if c.revoked_at else "expired"),
            )
            for c in found
        ],
    )


@token_app.command("revoke")
def revoke(
    credential_id: Annotated[str, typer.Argument(help="The id `ffleet token list` shows.")],
    store: StoreOption = None,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """Revoke a credential at once; a node's also takes the node out of the fleet."""
    if store is not None:
        from ffleet.store import NotFound

        with _opened(store) as opened:
            try:
                credential, _ = opened.revoke_credential(credential_id, database_now(opened))
            except NotFound as exc:
                typer.echo(f"error: {exc}", err=True)
                raise typer.Exit(1) from None
    else:
        from ffleet.cli_support import fleet_client

        with fleet_client(master, token, ca, cert, key) as client:
            credential = client.revoke_token(credential_id)
    typer.echo(f"{credential.id}: revoked")


def audit(
    since: Annotated[
        float | None,
        typer.Option(
            envvar="FFLEET_SINCE",
            help="Only entries this recent (e.g. 1h).",
            parser=duration,
            metavar="DURATION",
        ),
    ] = None,
    actor: Annotated[
        str | None, typer.Option(envvar="FFLEET_ACTOR", help="Credential id or name.")
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(envvar="FFLEET_ACTION", help='e.g. "POST /jobs/{job_id}/cancel".'),
    ] = None,
    limit: Annotated[
        int, typer.Option(envvar="FFLEET_LIMIT", min=1, max=10_000, help="Entries at most.")
    ] = 100,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
) -> None:
    """Show the audit trail, newest first: who changed or was refused what."""
    from ffleet.cli_support import fleet_client, show_table
    from ffleet.models import rfc3339

    start = None if since is None else rfc3339(time.time() - since)
    with fleet_client(master, token, ca, cert, key) as client:
        found = client.audit(start, actor, action, limit)
    show_table(
        f"{len(found)} audit entr{'y' if len(found) == 1 else 'ies'}",
        ("time", "actor", "role", "action", "target", "outcome", "from"),
        [
            (
                _when(e.at),
                f"{e.actor_name} ({e.actor_id})",
                e.role,
                e.action,
                e.target or "-",
                str(e.outcome),
                e.remote or "-",
            )
            for e in found
        ],
    )


def _opened(url: str) -> contextlib.closing[Store]:
    from ffleet.store import open_store

    try:
        return contextlib.closing(open_store(url))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--store") from None

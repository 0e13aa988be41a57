"""`ffleet nodes` and `ffleet drain`: the fleet's machines from the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from ffleet.cli_support import (
    CaOption,
    CertOption,
    JsonOption,
    KeyOption,
    MasterOption,
    TokenOption,
    fleet_client,
    print_json,
    show_table,
)
from ffleet.settings import DEFAULT_MASTER_URL

if TYPE_CHECKING:
    from ffleet.models import Node


def nodes(
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """List registered nodes; a node whose FFmpeg build differs from most nodes' is marked *."""
    from ffleet.builds import differs, majority_build

    with fleet_client(master, token, ca, cert, key) as client:
        found = client.nodes()
    if as_json:
        print_json(found)
        return
    majority = majority_build(found)
    odd = [node for node in found if differs(node, majority)]
    show_table(
        f"{len(found)} node(s)",
        ("id", "status", "type", "threads", "ram_gib", "gpu", "running", "ffmpeg", "labels"),
        [
            (
                node.id,
                node.status,
                node.type,
                str(node.cpu_threads),
                f"{node.ram_bytes / 2**30:.1f}",
                node.gpu_type or "-",
                str(len(node.running_job_ids)),
                _build_cell(node, majority),
                ",".join(f"{k}={v}" for k, v in sorted(node.labels.items())),
            )
            for node in found
        ],
    )
    if odd:
        typer.echo(
            f"{len(odd)} node(s) marked * run another FFmpeg build than the majority "
            f"({majority[:12] if majority else '?'}): their figures are not comparable."
        )


def _build_cell(node: Node, majority: str | None) -> str:
    """`version sha256-prefix`, marked `*` when it differs from the fleet's majority."""
    from ffleet.builds import differs

    sha = (node.ffmpeg_sha256 or "unknown")[:12]
    mark = " *" if differs(node, majority) else ""
    return f"{node.ffmpeg_version or '?'} {sha}{mark}"


def drain(
    node_id: str,
    undo: Annotated[
        bool, typer.Option("--undo", envvar="FFLEET_UNDO", help="Accept work again.")
    ] = False,
    master: MasterOption = DEFAULT_MASTER_URL,
    token: TokenOption = None,
    ca: CaOption = None,
    cert: CertOption = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Let a node finish its work and take no more (or --undo)."""
    with fleet_client(master, token, ca, cert, key) as client:
        found = client.drain(node_id, not undo)
    if as_json:
        print_json(found)
        return
    typer.echo(f"{found.id}: {found.status}")

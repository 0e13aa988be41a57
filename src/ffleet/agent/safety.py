"""The agent's safety checks: what a job may read, and where the agent may run.

A job names its input file, so the path is resolved and kept inside the directories the agent
was started with: a job must not read arbitrary files of the agent's host.

An agent refuses to run on the master's own machine unless told to: FFmpeg and the master
would compete for the same CPU, memory and disks, so this node's benchmark numbers stop being
comparable, and the master slows down for the whole fleet. It is allowed for development only,
after an explicit opt-in.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import psutil

from ffleet.scenarios import ScenarioError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MASTER_AS_WORKER_WARNING = """\
WARNING: the master runs on this machine, and this agent would run next to it.
A master-as-worker setup is meant for development and testing only:
  - Resource contention: FFmpeg jobs and the master share CPU, memory, disk and network,
    so benchmark numbers from this node are distorted and not comparable with the fleet.
  - A busy master slows scheduling, dispatch and result collection for the whole fleet.
  - A crash (out of memory, overheating, a kernel panic) takes the master and this worker
    down together, with every job in flight on any node.
Run agents on other machines for real work."""

CONFIRM_PROMPT = "Do you want to continue? (yes/no): "


def resolve_input_path(path: str, allowed_dirs: Sequence[Path]) -> Path:
    """Resolve an input file (symlinks followed) and make sure it lies inside an allowed dir.

    A relative path is looked up in each allowed directory in turn. Raises `ScenarioError`,
    so that a job cannot read arbitrary files of the agent's host.
    """
    if not allowed_dirs:
        raise ScenarioError(
            "This agent allows no input files; start it with an input directory to use 'input'."
        )
    roots = [Path(root).resolve() for root in allowed_dirs]
    candidate = Path(path)
    tries = [candidate] if candidate.is_absolute() else [root / candidate for root in roots]
    outside = False
    for attempt in tries:
        resolved = attempt.resolve()
        if not any(resolved.is_relative_to(root) for root in roots):
            outside = True
            continue
        if resolved.is_file():
            return resolved
    if outside:
        raise ScenarioError(f"Input {path!r} is outside the input directories this agent allows.")
    raise ScenarioError(f"Input file {path!r} does not exist in the allowed input directories.")


class MasterAsWorkerRefused(Exception):
    """The agent must not start on the master's machine; the message says how to opt in."""


def _url_host(master_url: str) -> str | None:
    # Without "//" urlsplit takes "host:port" for a scheme and a path.
    url = master_url if "//" in master_url else f"//{master_url}"
    try:
        host = urlsplit(url.strip()).hostname
    except ValueError:
        return None
    return host.split("%", 1)[0] if host else None


def _parse_address(text: str) -> IPAddress | None:
    """Address without IPv6 zone; IPv4-mapped IPv6 collapses to the IPv4 it carries."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _resolve(host: str) -> set[IPAddress]:
    """Every address ``host`` resolves to; empty when it does not resolve."""
    try:
        infos = socket.getaddrinfo(host, None)
    except (OSError, UnicodeError):
        return set()
    addresses = (_parse_address(str(info[4][0])) for info in infos)
    return {address for address in addresses if address is not None}


def _interface_addresses() -> set[IPAddress]:
    addresses = (
        _parse_address(entry.address)
        for entries in psutil.net_if_addrs().values()
        for entry in entries
        if entry.family in (socket.AF_INET, socket.AF_INET6)
    )
    return {address for address in addresses if address is not None}


def master_is_local(master_url: str) -> bool:
    """Whether the master URL's host is this machine.

    Compares resolved addresses, not substrings: "127.0.0.2", "[::1]", the hostname or a
    LAN address of this machine all count, while a name that merely contains "localhost"
    counts only if it resolves here. Cheap checks run first to avoid name lookups. An
    unresolvable host is not local.
    """
    host = _url_host(master_url)
    if host is None:
        return False
    targets = _resolve(host)
    if not targets:
        return False
    # 0.0.0.0 and :: are "this host" when connected to.
    if any(address.is_loopback or address.is_unspecified for address in targets):
        return True
    if targets & _interface_addresses():
        return True
    names = {socket.gethostname(), socket.getfqdn()}
    if host.lower() in {name.lower() for name in names if name}:
        return True
    return any(targets & _resolve(name) for name in names if name)


def confirm_master_as_worker(
    *,
    allow: bool,
    assume_yes: bool,
    interactive: bool,
    ask: Callable[[str], str],
    out: Callable[[str], None],
) -> None:
    """Let the agent start on the master's machine only after an explicit opt-in.

    Shows the warning, then requires ``--allow-master-as-worker`` and a confirmation:
    ``--yes``, or "yes"/"y" typed at a terminal. Raises MasterAsWorkerRefused otherwise.
    """
    out(MASTER_AS_WORKER_WARNING)
    if not allow:
        raise MasterAsWorkerRefused(
            "Refusing to start an agent on the master's machine. If this is a development or"
            " test setup and you accept the risks above, re-run the same command with"
            " --allow-master-as-worker added (and --yes to skip the confirmation)."
        )
    if assume_yes:
        return
    if not interactive:
        raise MasterAsWorkerRefused(
            "Cannot ask for confirmation: no terminal. Re-run the same command with"
            " --allow-master-as-worker --yes to confirm non-interactively."
        )
    try:
        answer = ask(CONFIRM_PROMPT)
    except EOFError:
        answer = ""
    if answer.strip().lower() not in {"yes", "y"}:
        raise MasterAsWorkerRefused(
            "Not confirmed; the agent was not started. Answer 'yes', or add --yes"
            " together with --allow-master-as-worker."
        )

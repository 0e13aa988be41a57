"""Secure by default: whether this master authenticates, decided once at start.

- Bound only to loopback with no credentials in the store: open, as v1.0 was, said once.
- Credentials in the store, or `--auth required`: every request needs a token. The first start
  that finds no admin credential creates one, prints it once and writes it to a file only the
  owner can read; it is never logged.
- Bound to any other address without authentication: refused, unless `--insecure` says so
  explicitly; then it runs open and keeps warning (every `--insecure-warn-interval`).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path

from ffleet.master.clock import database_now
from ffleet.master.settings import MasterSettings
from ffleet.store import Store
from ffleet.tokens import Role

log = logging.getLogger("ffleet.master")

INSECURE_WARNING = (
    "running WITHOUT AUTHENTICATION (--insecure): anyone who reaches this master can run "
    "jobs on every node and read every result"
)


class StartRefused(Exception):
    """This master must not start as configured; the message says what to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name that may resolve anywhere


def authentication_on(settings: MasterSettings, store: Store) -> bool:
    """Whether requests need a token; refuses an exposed open master (StartRefused)."""
    if settings.insecure:
        log.warning(INSECURE_WARNING)
        return False
    if settings.auth == "required" or store.count_credentials(database_now(store)) > 0:
        return True
    if is_loopback(settings.host):
        log.info(
            "no credentials configured: the API is open to local users on %s (as v1.0); "
            "use --auth required to demand tokens",
            settings.host,
        )
        return False
    raise StartRefused(
        f"refusing to serve {settings.host} without authentication: use --auth required "
        "(creates an admin token on first start), or --insecure to run open on purpose"
    )


def bootstrap_admin(store: Store, path: Path) -> None:
    """The first start with authentication and no admin: create one, show it this once."""
    now = database_now(store)
    if store.count_credentials(now, Role.ADMIN.value) > 0:
        return
    credential, secret = store.create_credential(Role.ADMIN.value, "admin", now)
    path = path.resolve()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)  # also when the file was there before
            handle.write(secret + "\n")
        kept = f"also written to {path}, mode 0600"
    except OSError as exc:  # a read-only file system (a hardened pod): the output must do
        kept = f"NOT written to {path} ({exc.strerror}): keep it from here"
    # Printed, not logged: log lines are shipped and kept; this is shown once, here.
    sys.stderr.write(
        f"created admin credential {credential.id}; its token (shown only now, {kept}):\n{secret}\n"
    )
    sys.stderr.flush()
    log.info("created admin credential %s (token: %s)", credential.id, kept.split(",")[0])

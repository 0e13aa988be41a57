"""This node's standing with its master: which node it is, its registration, whether the
master answers, and what a refused call means.

The node id and credential live in the work dir, so a restarted agent is the same node. The
slots and the heartbeat call the master from their own threads, and any of them may learn
that the master forgot this node (an in-memory master restarted) or revoked it; this is the
one place that reacts, once however many threads learn it.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import msgspec

from ffleet.agent.client import MasterClient, MasterRejected, MasterUnavailable
from ffleet.agent.ffmpeg_build import FfmpegBuild
from ffleet.agent.hardware import Hardware, registration_payload
from ffleet.agent.settings import AgentSettings
from ffleet.agent.work_dir import read_node_id, read_node_token, write_node_id, write_node_token
from ffleet.redaction import redact_url

log = logging.getLogger(__name__)


class Reachability:
    """Logs a lost or regained master once per change instead of once per failed call."""

    def __init__(self, url: str) -> None:
        self._url = redact_url(url)
        self._down = False
        self._lock = threading.Lock()

    def failed(self, exc: Exception) -> None:
        with self._lock:
            first, self._down = not self._down, True
        if first:
            log.warning("master %s unreachable: %s", self._url, exc)

    def ok(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            log.info("master %s reachable again", self._url)


class MasterLink:
    """Registers this node and keeps it registered; `revoked` is told when the master refuses
    the node's credential (the node is then out of the fleet)."""

    def __init__(
        self,
        config: AgentSettings,
        hardware: Hardware,
        build: FfmpegBuild,
        client: MasterClient,
        revoked: Callable[[MasterRejected], None],
    ) -> None:
        self._config = config
        self._hardware = hardware
        self._build = build
        self._client = client
        self._revoked = revoked
        self.node_id = read_node_id(config.work_dir)
        # Once enrolled, the node's own credential; until then the enrollment token.
        credential = read_node_token(config.work_dir)
        self.enrolled = credential is not None
        credential = credential or config.enroll_token
        if credential is not None:
            client.use_token(credential)
        self.reachability = Reachability(config.master_url)
        self._register_lock = threading.Lock()
        self.registrations = 0  # a call made under one count learns if others registered since

    def register(self) -> None:
        registration = registration_payload(
            self._hardware,
            _local_address(self._config.master_url),
            dict(self._config.labels),
            slots=self._config.slots,
            node_id=self.node_id,
        )
        registration = msgspec.structs.replace(
            registration,
            ffmpeg_sha256=self._build.sha256,
            ffmpeg_configuration=self._build.configuration,
        )
        node = self._client.register(registration)
        if node.id != self.node_id:  # a master that assigns its own ids (v1.0, enrollment)
            self.node_id = node.id
            write_node_id(self._config.work_dir, node.id)
        if node.token is not None:  # enrolled: from now on this node's own credential
            path = write_node_token(self._config.work_dir, node.token)
            self._client.use_token(node.token)
            self.enrolled = True
            log.info("enrolled as node %s; its credential is kept in %s", node.id, path)
        self.registrations += 1
        log.info(
            "registered with %s as node %s (%d slot(s))",
            redact_url(self._config.master_url),
            node.id,
            self._config.slots,
        )

    def refused(self, exc: MasterRejected, seen: int, call: str) -> bool:
        """The master refused a node call (`call` names it) made under registration count
        `seen`. A forgotten node registers again, a revoked one is reported; any other refusal
        is logged, and True returned: the caller should wait before it asks again."""
        self.reachability.ok()
        if exc.status_code == 404:
            self._reregister(seen)
        elif exc.status_code == 401:
            self._revoked(exc)
        else:
            log.warning("%s refused by the master: %s", call, exc)
            return True
        return False

    def _reregister(self, seen: int) -> None:
        """The master forgot this node (an in-memory master restarted): register again.

        If another thread registered since `seen`, that one already did it (a second one
        would end our new attempts).
        """
        with self._register_lock:
            if self.registrations != seen:
                return
            log.warning("master does not know node %s; registering again", self.node_id)
            try:
                self.register()
            except (MasterUnavailable, MasterRejected) as exc:
                self.reachability.failed(exc)


def _local_address(master_url: str) -> str:
    """The address this machine reaches the master from (no packet is sent), else its name."""
    url = master_url if "//" in master_url else f"//{master_url}"
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    try:
        port = parts.port or 80
        family, kind, proto, _, target = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.connect(target)
            return str(probe.getsockname()[0])
    except (OSError, ValueError, IndexError):
        return socket.gethostname()

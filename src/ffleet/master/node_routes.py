"""The node endpoints: registration (enrollment included), listing, heartbeats, draining."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from ffleet.master.http import JsonResponse, decode, path_id
from ffleet.master.id_prefixes import by_id
from ffleet.models import DrainRequest, Heartbeat, Node, NodeRegistration, encode_hook
from ffleet.tokens import Role

if TYPE_CHECKING:
    from ffleet.master.app import MasterApp

log = logging.getLogger("ffleet.master")


class NodeRoutes:
    """Routes over the master's store and dispatcher."""

    def __init__(self, master: MasterApp) -> None:
        self.store = master.store
        self.limit = master.limit
        self.call = master.call
        self.clock = master.clock
        self.dispatcher = master.dispatcher
        self.access = master.access
        self.identity = master.guard.identity

    async def register(self, request: Request) -> Response:
        """An enrollment token registers a new node and gets it its own credential (in the
        reply, once); a node credential re-registers only its own node, with the labels it
        was enrolled with."""
        registration = await decode(request, NodeRegistration, self.limit)
        identity = self.identity(request)
        token: str | None = None
        if identity.role == Role.ENROLL:
            assert identity.credential is not None
            node, _, token = await self.call(
                self.store.enroll_node, registration, identity.credential, self.clock.now()
            )
            if identity.credential.one_time:
                self.access.forget(identity.id)
        else:
            if identity.role == Role.NODE:
                assert identity.node_id is not None and identity.credential is not None
                identity.require_node(registration.id or identity.node_id)
                registration = msgspec.structs.replace(
                    registration,
                    id=identity.node_id,
                    labels=dict(identity.credential.labels or {}),
                )
            node = await self.call(self.store.register_node, registration, self.clock.now())
        request.state.audit_target = node.id
        log.info(
            "node registered: %s (%s, %d threads, %s%s)",
            node.id,
            node.type,
            node.cpu_threads,
            node.cpu_model or "unknown CPU",
            f", GPU {node.gpu_type}" if node.has_gpu else "",
        )
        self.dispatcher.notify_all()  # a new node may make unschedulable work runnable
        if token is None:
            return JsonResponse(node, status_code=201)
        body = msgspec.to_builtins(node, enc_hook=encode_hook)
        body["token"] = token  # the node's own credential, shown this once
        return JsonResponse(body, status_code=201)

    async def list_nodes(self, request: Request) -> Response:
        found = await self.call(self.store.list_nodes)
        return JsonResponse({"nodes": found, "count": len(found)})

    async def get_node(self, request: Request) -> Response:
        def with_efficiency(node_id: str) -> Node:
            node = self.store.get_node(node_id)
            node.efficiency = self.store.node_efficiency(node.id)
            return node

        node_id = path_id(request, "node_id")
        return JsonResponse(await self.call(by_id, self.store, "node", node_id, with_efficiency))

    async def heartbeat(self, request: Request) -> Response:
        node_id = path_id(request, "node_id")
        self.identity(request).require_node(node_id)
        beat = await decode(request, Heartbeat, self.limit, optional=True)
        return JsonResponse(await self.call(self.store.heartbeat, node_id, beat, self.clock.now()))

    async def drain(self, request: Request) -> Response:
        body = await decode(request, DrainRequest, self.limit, optional=True)
        node = await self.call(
            by_id,
            self.store,
            "node",
            path_id(request, "node_id"),
            lambda node_id: self.store.set_draining(node_id, body.drain),
        )
        log.info("node %s %s", node.id, "draining" if body.drain else "accepting work again")
        if not body.drain:  # its waiting job request looks again (nothing else would wake it)
            self.dispatcher.notify_node(node.id)
        return JsonResponse(node)

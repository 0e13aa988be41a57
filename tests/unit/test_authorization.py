"""Who may do what: every route x every role x no token x a revoked token, in-process.

A refusal is 401 (no usable token) or 403 (the role may not), always as {"error": ...}, and
changes nothing the store holds. Node credentials act only for their own node.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from ffleet.master.app import create_app
from ffleet.master.settings import MasterSettings
from ffleet.master.ui import live
from ffleet.models import encode_hook
from ffleet.store import SchedulingPolicy, Store
from tests.unit.test_api import NODE
from tests.unit.test_api import test_v1_flow_keeps_the_seed_shapes as v1_flow

SCENARIO = {"scenario": "720p-h264"}
ROLES = ("admin", "submitter", "reader", "node", "enroll")
CALLERS = (*ROLES, "none", "revoked")


@dataclass
class Fleet:
    """An authenticating master in-process, a token of every role, two enrolled nodes."""

    client: TestClient
    store: Store
    tokens: dict[str, str]
    node_a: str
    node_b: str
    node_b_token: str
    job: str  # submitted by the submitter token

    def headers(self, caller: str) -> dict[str, str]:
        token = self.tokens.get(caller)
        return {} if token is None else {"Authorization": f"Bearer {token}"}

    def as_(self, caller: str) -> TestClient:
        """The client, sending `caller`'s credential only (no dashboard session either)."""
        self.client.headers.clear()
        self.client.cookies.clear()
        self.client.headers.update(self.headers(caller))
        return self.client


def issue(client: TestClient, admin: str, role: str, **extra: Any) -> dict[str, Any]:
    reply = client.post(
        "/tokens", json={"role": role, **extra}, headers={"Authorization": f"Bearer {admin}"}
    )
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def enroll(client: TestClient, enroll_token: str, **extra: Any) -> dict[str, Any]:
    reply = client.post(
        "/nodes/register",
        json={**NODE, **extra},
        headers={"Authorization": f"Bearer {enroll_token}"},
    )
    assert reply.status_code == 201, reply.text
    body: dict[str, Any] = reply.json()
    return body


def settings(tmp_path: Path, **changes: Any) -> MasterSettings:
    values: dict[str, Any] = {
        "store_url": "memory",
        "policy": SchedulingPolicy(node_timeout_s=30),
        "max_wait_s": 5,
        "auth": "required",
        "admin_token_file": tmp_path / "admin-token",
        "blob_dir": tmp_path / "blobs",
    }
    return MasterSettings(**{**values, **changes})


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    monkeypatch.setattr(live, "STREAM_LIFETIME_S", 0.0)  # a dashboard stream ends at once
    app = create_app(settings(tmp_path))
    with TestClient(app) as client:
        admin = (tmp_path / "admin-token").read_text().strip()
        tokens = {"admin": admin}
        for role in ("submitter", "reader", "enroll"):
            tokens[role] = issue(client, admin, role)["token"]
        node_a = enroll(client, tokens["enroll"])
        node_b = enroll(client, tokens["enroll"])
        tokens["node"] = node_a["token"]
        revoked = issue(client, admin, "admin")
        gone = client.post(
            f"/tokens/{revoked['id']}/revoke", headers={"Authorization": f"Bearer {admin}"}
        )
        assert gone.status_code == 200
        tokens["revoked"] = revoked["token"]
        job = client.post(
            "/jobs", json=SCENARIO, headers={"Authorization": f"Bearer {tokens['submitter']}"}
        )
        assert job.status_code == 201
        client.headers.clear()
        yield Fleet(
            client,
            app.state.master.store,
            tokens,
            node_a["id"],
            node_b["id"],
            node_b["token"],
            job.json()["id"],
        )


def state(store: Store) -> Any:
    """Everything a request could change (the audit trail aside: refusals are recorded)."""
    jobs, _ = store.list_jobs(None, None, 0)
    return msgspec.to_builtins(
        {
            "nodes": store.list_nodes(),
            "jobs": [store.get_job(job.id) for job in jobs],
            "results": store.list_results(None, None, 0),
            "credentials": store.list_credentials(),
        },
        enc_hook=encode_hook,
    )


Request = Callable[[Fleet], tuple[str, str, Any]]
READ = {"admin", "submitter", "reader"}
SUBMIT = {"admin", "submitter"}
NODE_ROLES = {"admin", "node"}
PUBLIC = set(CALLERS)


BLOB = hashlib.sha256(b"never uploaded").hexdigest()


def _upload() -> tuple[str, str, Any]:
    """A PUT of fresh bytes: a refused one must leave no blob behind."""
    body = os.urandom(16)
    return "PUT", f"/blobs/{hashlib.sha256(body).hexdigest()}?size=16&offset=0", body


def _throwaway(fleet: Fleet) -> str:
    return str(fleet.store.create_credential("reader", "throwaway", time.time())[0].id)


# (method, route template) -> (who may, the request to send)
MATRIX: dict[tuple[str, str], tuple[set[str], Request]] = {
    ("GET", "/health"): (PUBLIC, lambda f: ("GET", "/health", None)),
    ("GET", "/ready"): (PUBLIC, lambda f: ("GET", "/ready", None)),
    ("GET", "/openapi.json"): (PUBLIC, lambda f: ("GET", "/openapi.json", None)),
    ("GET", "/docs"): (PUBLIC, lambda f: ("GET", "/docs", None)),
    ("POST", "/nodes/register"): (
        {"admin", "node", "enroll"},
        lambda f: ("POST", "/nodes/register", {**NODE, "id": f.node_a}),
    ),
    ("GET", "/nodes"): (READ, lambda f: ("GET", "/nodes", None)),
    ("GET", "/nodes/{node_id}"): (READ, lambda f: ("GET", f"/nodes/{f.node_a}", None)),
    ("POST", "/nodes/{node_id}/heartbeat"): (
        NODE_ROLES,
        lambda f: ("POST", f"/nodes/{f.node_a}/heartbeat", {"jobs": []}),
    ),
    ("POST", "/nodes/{node_id}/drain"): (
        {"admin"},
        lambda f: ("POST", f"/nodes/{f.node_a}/drain", {"drain": False}),
    ),
    ("POST", "/jobs"): (SUBMIT, lambda f: ("POST", "/jobs", SCENARIO)),
    ("GET", "/jobs"): (READ, lambda f: ("GET", "/jobs", None)),
    ("POST", "/jobs/batch"): (SUBMIT, lambda f: ("POST", "/jobs/batch", {"jobs": [SCENARIO]})),
    ("POST", "/jobs/purge"): ({"admin"}, lambda f: ("POST", "/jobs/purge", {"job_ids": []})),
    ("GET", "/results/export"): (READ, lambda f: ("GET", "/results/export", None)),
    ("GET", "/metrics"): (PUBLIC, lambda f: ("GET", "/metrics", None)),
    ("GET", "/blobs/{digest}"): (READ | NODE_ROLES, lambda f: ("GET", f"/blobs/{BLOB}", None)),
    ("GET", "/blobs/{digest}/upload"): (
        SUBMIT | NODE_ROLES,
        lambda f: ("GET", f"/blobs/{BLOB}/upload", None),
    ),
    ("PUT", "/blobs/{digest}"): (SUBMIT | NODE_ROLES, lambda f: _upload()),
    ("GET", "/jobs/next"): (
        NODE_ROLES,
        lambda f: ("GET", f"/jobs/next?node_id={f.node_a}&wait=0", None),
    ),
    ("POST", "/jobs/next"): (
        NODE_ROLES,
        lambda f: ("POST", f"/jobs/next?node_id={f.node_a}&wait=0", None),
    ),
    ("GET", "/jobs/{job_id}"): (READ, lambda f: ("GET", f"/jobs/{f.job}", None)),
    ("GET", "/jobs/{job_id}/explain"): (READ, lambda f: ("GET", f"/jobs/{f.job}/explain", None)),
    ("GET", "/"): (READ, lambda f: ("GET", "/", None)),
    ("GET", "/ui"): (READ, lambda f: ("GET", "/ui", None)),
    ("GET", "/ui/jobs"): (READ, lambda f: ("GET", "/ui/jobs", None)),
    ("GET", "/ui/jobs/{job_id}"): (READ, lambda f: ("GET", f"/ui/jobs/{f.job}", None)),
    ("GET", "/ui/results"): (READ, lambda f: ("GET", "/ui/results", None)),
    ("GET", "/ui/sign-in"): (PUBLIC, lambda f: ("GET", "/ui/sign-in", None)),
    ("POST", "/ui/session"): (READ, lambda f: ("POST", "/ui/session", None)),
    ("POST", "/ui/sign-out"): (PUBLIC, lambda f: ("POST", "/ui/sign-out", None)),
    ("GET", "/ui/events"): (READ, lambda f: ("GET", "/ui/events", None)),
    ("GET", "/ui/jobs/events"): (READ, lambda f: ("GET", "/ui/jobs/events", None)),
    ("GET", "/ui/jobs/{job_id}/events"): (
        READ,
        lambda f: ("GET", f"/ui/jobs/{f.job}/events", None),
    ),
    ("POST", "/jobs/{job_id}/cancel"): (SUBMIT, lambda f: ("POST", f"/jobs/{f.job}/cancel", None)),
    ("POST", "/jobs/{job_id}/retry"): (SUBMIT, lambda f: ("POST", f"/jobs/{f.job}/retry", None)),
    ("POST", "/jobs/{job_id}/release"): (
        NODE_ROLES,
        lambda f: (
            "POST",
            f"/jobs/{f.job}/release",
            {"node_id": f.node_a, "attempt": 1, "reason": "test"},
        ),
    ),
    ("POST", "/results"): (
        NODE_ROLES,
        lambda f: ("POST", "/results", {"job_id": f.job, "node_id": f.node_a, "status": "failed"}),
    ),
    ("GET", "/results"): (READ, lambda f: ("GET", "/results", None)),
    ("POST", "/tokens"): ({"admin"}, lambda f: ("POST", "/tokens", {"role": "reader"})),
    ("GET", "/tokens"): ({"admin"}, lambda f: ("GET", "/tokens", None)),
    ("POST", "/tokens/{token_id}/revoke"): (
        {"admin"},
        lambda f: ("POST", f"/tokens/{_throwaway(f)}/revoke", None),
    ),
    ("GET", "/audit"): ({"admin"}, lambda f: ("GET", "/audit", None)),
}


def test_the_matrix_names_every_route(fleet: Fleet) -> None:
    app = fleet.client.app
    routes = {
        (method, route.path)
        for route in app.routes  # type: ignore[attr-defined]
        if isinstance(route, Route)
        for method in (route.methods or ()) - {"HEAD"}
    }
    assert routes == set(MATRIX)


@pytest.mark.parametrize("route", list(MATRIX), ids=" ".join)
def test_every_route_for_every_caller(fleet: Fleet, route: tuple[str, str]) -> None:
    allowed, build = MATRIX[route]
    for caller in CALLERS:
        method, path, body = build(fleet)
        before = state(fleet.store)
        if isinstance(body, bytes):
            reply = fleet.as_(caller).request(method, path, content=body)
        else:
            reply = fleet.as_(caller).request(method, path, json=body)
        if caller in allowed:
            assert reply.status_code not in (401, 403), (caller, reply.text)
            assert reply.status_code < 500, (caller, reply.text)
            continue
        expected = 401 if caller in ("none", "revoked") else 403
        assert reply.status_code == expected, (caller, reply.text)
        assert set(reply.json()) == {"error"}
        assert state(fleet.store) == before, f"{caller}'s refused {method} {path} changed state"
        if method == "PUT":
            digest = path.split("/")[2].split("?")[0]
            assert fleet.client.app.state.master.blobs.store.size(digest) is None  # type: ignore[attr-defined]


def test_a_node_acts_only_for_itself(fleet: Fleet) -> None:
    """Node B's credential, used for node A, is refused every time and changes nothing."""
    mine = {"Authorization": f"Bearer {fleet.tokens['node']}"}
    claimed = fleet.client.get(f"/jobs/next?node_id={fleet.node_a}&wait=0", headers=mine)
    assert claimed.json()["id"] == fleet.job
    spoof = {"Authorization": f"Bearer {fleet.node_b_token}"}
    attempts = [
        ("POST", f"/nodes/{fleet.node_a}/heartbeat", {"jobs": []}),
        ("POST", "/nodes/register", {**NODE, "id": fleet.node_a}),
        ("GET", f"/jobs/next?node_id={fleet.node_a}&wait=0", None),
        (
            "POST",
            "/results",
            {"job_id": fleet.job, "node_id": fleet.node_a, "attempt": 1, "status": "completed"},
        ),
        (
            "POST",
            f"/jobs/{fleet.job}/release",
            {"node_id": fleet.node_a, "attempt": 1, "reason": "spoofed"},
        ),
    ]
    for method, path, body in attempts:
        before = state(fleet.store)
        reply = fleet.client.request(method, path, json=body, headers=spoof)
        assert reply.status_code == 403, (path, reply.text)
        assert state(fleet.store) == before
    job = fleet.client.get(f"/jobs/{fleet.job}", headers=fleet.headers("reader")).json()
    assert (job["status"], job["node_id"]) == ("running", fleet.node_a)


def test_a_submitter_cancels_and_retries_only_its_own_jobs(fleet: Fleet) -> None:
    other = issue(fleet.client, fleet.tokens["admin"], "submitter")["token"]
    theirs = {"Authorization": f"Bearer {other}"}
    for action in ("cancel", "retry"):
        before = state(fleet.store)
        reply = fleet.client.post(f"/jobs/{fleet.job}/{action}", headers=theirs)
        assert reply.status_code == 403 and state(fleet.store) == before
    own = fleet.client.post(f"/jobs/{fleet.job}/cancel", headers=fleet.headers("submitter"))
    assert own.status_code == 200 and own.json()["status"] == "canceled"


def test_revoking_a_node_ends_its_work_and_shuts_it_out(fleet: Fleet) -> None:
    node = fleet.headers("node")
    assert fleet.client.get(f"/jobs/next?node_id={fleet.node_a}", headers=node).status_code == 200
    admin = fleet.headers("admin")
    credentials = fleet.client.get("/tokens", headers=admin).json()["tokens"]
    (mine,) = [c for c in credentials if c["node_id"] == fleet.node_a]
    assert fleet.client.post(f"/tokens/{mine['id']}/revoke", headers=admin).status_code == 200
    job = fleet.client.get(f"/jobs/{fleet.job}", headers=admin).json()
    assert job["status"] == "pending" and job["attempts"][0]["outcome"] == "failed"
    assert "lost its credential" in job["attempts"][0]["error"]
    beat = fleet.client.post(f"/nodes/{fleet.node_a}/heartbeat", headers=node)
    assert beat.status_code == 401 and beat.json() == {"error": "token revoked or expired"}
    assert fleet.client.get(f"/nodes/{fleet.node_a}", headers=admin).json()["status"] == "offline"


def test_enrolled_labels_are_the_ones_placement_trusts(fleet: Fleet) -> None:
    admin = fleet.tokens["admin"]
    gpu_only = issue(fleet.client, admin, "enroll", labels={"pool": "gpu"}, one_time=True)
    node = enroll(fleet.client, gpu_only["token"], labels={"pool": "cpu", "extra": "x"})
    assert node["labels"] == {"pool": "gpu"}  # the enrollment's, not the node's own claim
    again = fleet.client.post(
        "/nodes/register",
        json={**NODE, "id": node["id"], "labels": {"pool": "cheap"}},
        headers={"Authorization": f"Bearer {node['token']}"},
    )
    assert again.status_code == 201 and again.json()["labels"] == {"pool": "gpu"}
    assert "token" not in again.json()  # a node's credential is shown once, at enrollment
    used = fleet.client.post(
        "/nodes/register", json=NODE, headers={"Authorization": f"Bearer {gpu_only['token']}"}
    )
    assert used.status_code == 401  # one-time: used up by the first node


def test_enrollment_cannot_take_over_a_known_node(fleet: Fleet) -> None:
    node = enroll(fleet.client, fleet.tokens["enroll"], id=fleet.node_a)
    assert node["id"] not in (fleet.node_a, fleet.node_b)


def test_expired_and_made_up_tokens_are_refused(fleet: Fleet) -> None:
    now = time.time()
    _, expired = fleet.store.create_credential("admin", "old", now - 10, expires_at=now - 1)
    for token in (expired, "ffleet_" + "x" * 43, "not-even-the-format"):
        reply = fleet.client.get("/jobs", headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 401 and "error" in reply.json()
    basic = fleet.client.get("/jobs", headers={"Authorization": "Basic YWRtaW46YWRtaW4="})
    assert basic.status_code == 401


def test_tokens_are_stored_as_hashes_and_listed_without_secrets(fleet: Fleet) -> None:
    listed = fleet.client.get("/tokens", headers=fleet.headers("admin"))
    assert listed.status_code == 200 and "ffleet_" not in listed.text
    assert all("token" not in c for c in listed.json()["tokens"])
    for token in fleet.tokens.values():
        assert fleet.store.find_credential(token) is not None  # found by its hash
    assert not any(
        token in repr(c) for token in fleet.tokens.values() for c in fleet.store.list_credentials()
    )


def test_the_audit_trail_records_changes_and_refusals_and_no_secret(fleet: Fleet) -> None:
    fleet.as_("reader").post("/jobs", json=SCENARIO)  # refused: 403
    fleet.as_("none").post(f"/jobs/{fleet.job}/cancel")  # refused: 401
    fleet.as_("submitter").post(f"/jobs/{fleet.job}/cancel")  # done
    reply = fleet.as_("admin").get("/audit", params={"limit": 1000})
    assert reply.status_code == 200
    entries = reply.json()["entries"]
    seen = {(e["role"], e["action"], e["outcome"]) for e in entries}
    assert ("reader", "POST /jobs", 403) in seen
    assert ("-", "POST /jobs/{job_id}/cancel", 401) in seen
    assert ("submitter", "POST /jobs/{job_id}/cancel", 200) in seen
    assert ("admin", "POST /tokens", 201) in seen and (
        "enroll",
        "POST /nodes/register",
        201,
    ) in seen
    cancel = next(e for e in entries if e["action"].endswith("/cancel") and e["outcome"] == 200)
    assert cancel["target"] == fleet.job and cancel["remote"] == "testclient"
    assert not any(token in reply.text for token in fleet.tokens.values())
    filtered = fleet.client.get("/audit", params={"action": "POST /jobs", "actor": "reader-x"})
    assert filtered.json()["count"] == 0


def test_the_v1_flow_passes_with_a_token_when_authentication_is_on(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path))) as client:
        admin = (tmp_path / "admin-token").read_text().strip()
        client.headers["Authorization"] = f"Bearer {admin}"
        v1_flow(client)


def test_first_start_with_authentication_writes_an_admin_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'ffleet.db'}"
    with TestClient(create_app(settings(tmp_path, store_url=url))):
        pass
    path = tmp_path / "admin-token"
    token = path.read_text().strip()
    assert token.startswith("ffleet_") and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert token in capsys.readouterr().err
    path.unlink()
    with TestClient(create_app(settings(tmp_path, store_url=url))):
        pass
    assert not path.exists() and token not in capsys.readouterr().err  # never shown again

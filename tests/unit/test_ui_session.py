"""Signing in to the dashboard, in-process: the cookie's attributes, what it is accepted for
(reads, and changes only with the dashboard's header), where a signed-out browser goes, and
that revoking or expiring the token ends the session at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ffleet.master.access import SESSION_COOKIE, UI_HEADER
from ffleet.master.app import create_app
from ffleet.master.settings import MasterSettings
from ffleet.master.ui import live
from ffleet.store import Store, open_store

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
DASHBOARD = {UI_HEADER: "1"}


@dataclass
class Master:
    client: TestClient
    store: Store
    admin: str

    def token(self, role: str, expires_at: float | None = None) -> tuple[str, str]:
        """A new credential's (id, token)."""
        credential, secret = self.store.create_credential(
            role, f"a {role}", time.time(), expires_at=expires_at
        )
        return credential.id, secret

    def sign_in(self, token: str) -> TestClient:
        reply = self.client.post(
            "/ui/session", headers={"Authorization": f"Bearer {token}", **DASHBOARD}
        )
        assert reply.status_code == 200, reply.text
        assert self.client.cookies.get(SESSION_COOKIE) == token
        return self.client

    def job(self) -> str:
        reply = self.client.post(
            "/jobs",
            json={"scenario": "360p-h264"},
            headers={"Authorization": f"Bearer {self.admin}"},
        )
        job_id: str = reply.json()["id"]
        return job_id


def authenticating(tmp_path: Path, base_url: str = "http://testserver") -> Iterator[Master]:
    store = open_store("memory")
    _, admin = store.create_credential("admin", "admin", time.time())
    settings = MasterSettings(auth="required", admin_token_file=tmp_path / "admin-token")
    with TestClient(create_app(settings, store), base_url=base_url) as client:
        yield Master(client, store, admin)
    store.close()


@pytest.fixture
def master(tmp_path: Path) -> Iterator[Master]:
    yield from authenticating(tmp_path)


def test_signing_in_sets_an_http_only_strict_cookie_that_ends_with_the_token(
    master: Master,
) -> None:
    _, token = master.token("reader", expires_at=time.time() + 600)
    reply = master.client.post("/ui/session", headers={"Authorization": f"Bearer {token}"})
    assert reply.status_code == 200
    assert reply.json()["role"] == "reader" and token not in reply.text
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={token};")
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite", "path", "max-age"} <= attributes and "secure" not in attributes
    assert "samesite=strict" in cookie.lower()
    max_age = int(cookie.lower().split("max-age=")[1].split(";")[0])
    assert 590 <= max_age <= 601
    _, lasting = master.token("submitter")
    reply = master.client.post("/ui/session", headers={"Authorization": f"Bearer {lasting}"})
    assert "max-age" not in reply.headers["set-cookie"].lower()  # until the browser closes


def test_over_https_the_cookie_is_secure(tmp_path: Path) -> None:
    for master in authenticating(tmp_path, base_url="https://testserver"):
        _, token = master.token("reader")
        reply = master.client.post("/ui/session", headers={"Authorization": f"Bearer {token}"})
        assert "; secure" in reply.headers["set-cookie"].lower()


def test_a_bad_token_or_a_role_without_pages_cannot_sign_in(master: Master) -> None:
    for token in ("ffleet_" + "x" * 43, "not-a-token"):
        reply = master.client.post("/ui/session", headers={"Authorization": f"Bearer {token}"})
        assert reply.status_code == 401 and reply.json() == {"error": "invalid token"}
    _, node = master.token("enroll")
    reply = master.client.post("/ui/session", headers={"Authorization": f"Bearer {node}"})
    assert reply.status_code == 403 and "role enroll may not" in reply.json()["error"]
    assert SESSION_COOKIE not in master.client.cookies


def test_the_cookie_reads_but_changes_only_with_the_dashboards_header(master: Master) -> None:
    job_id = master.job()
    _, token = master.token("admin")
    client = master.sign_in(token)
    assert client.get("/jobs").status_code == 200
    assert client.get("/ui", headers=BROWSER).status_code == 200
    forged = client.post(f"/jobs/{job_id}/cancel")  # what a form on another site would send
    assert forged.status_code == 403 and UI_HEADER in forged.json()["error"]
    assert master.store.get_job(job_id).job.status == "pending"
    done = client.post(f"/jobs/{job_id}/cancel", headers=DASHBOARD)
    assert done.status_code == 200 and done.json()["status"] == "canceled"


def test_a_signed_out_browser_is_sent_to_the_sign_in_page(master: Master) -> None:
    page = master.client.get("/ui/jobs?status=pending", headers=BROWSER, follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/sign-in?next=%2Fui%2Fjobs%3Fstatus%3Dpending"
    assert master.client.get("/ui/jobs").status_code == 401  # an API client keeps its 401
    form = master.client.get(page.headers["location"])
    assert form.status_code == 200 and 'id="sign-in-form"' in form.text
    assert 'data-next="/ui/jobs?status=pending"' in form.text
    for elsewhere in ("https://evil.example/", "//evil.example/ui", "/ui/..\\evil"):
        page = master.client.get("/ui/sign-in", params={"next": elsewhere})
        assert 'data-next="/ui"' in page.text


def test_revoking_the_token_ends_the_session_at_once(master: Master) -> None:
    credential_id, token = master.token("reader")
    client = master.sign_in(token)
    assert client.get("/ui", headers=BROWSER).status_code == 200
    revoked = client.post(
        f"/tokens/{credential_id}/revoke", headers={"Authorization": f"Bearer {master.admin}"}
    )
    assert revoked.status_code == 200
    page = client.get("/ui", headers=BROWSER, follow_redirects=False)
    assert page.status_code == 303 and "ended=1" in page.headers["location"]
    assert SESSION_COOKIE not in client.cookies  # the stale cookie is cleared
    assert "has ended" in client.get(page.headers["location"]).text


def test_a_token_expiring_by_the_masters_clock_ends_the_session(master: Master) -> None:
    """Expiry follows the master's clock (the database's, shared by every master), not this
    machine's: here the master's runs two minutes ahead, past the token's end."""
    _, token = master.token("reader", expires_at=time.time() + 60)
    client = master.sign_in(token)
    assert client.get("/ui", headers=BROWSER).status_code == 200
    client.app.state.master.clock.offset_s = 120.0  # type: ignore[attr-defined]
    page = client.get("/ui", headers=BROWSER, follow_redirects=False)
    assert page.status_code == 303 and "ended=1" in page.headers["location"]


def test_an_open_page_is_signed_out_when_its_token_is_revoked(
    master: Master, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live, "LIVE_INTERVAL_S", 0.02)
    monkeypatch.setattr(live, "STREAM_LIFETIME_S", 10.0)
    credential_id, token = master.token("reader")
    client = master.sign_in(token)
    access = client.app.state.master.access  # type: ignore[attr-defined]

    def revoke() -> None:
        master.store.revoke_credential(credential_id, time.time())
        access.forget(credential_id)

    timer = threading.Timer(0.3, revoke)
    timer.start()
    started = time.monotonic()
    body = client.get("/ui/events").text
    timer.join()
    assert time.monotonic() - started < 5  # ended by the revocation, not by its lifetime
    assert "event: region" in body
    assert body.rstrip().endswith("event: signed-out\ndata: token revoked or expired")


def test_signing_out_clears_the_cookie(master: Master) -> None:
    _, token = master.token("reader")
    client = master.sign_in(token)
    page = client.get("/ui", headers=BROWSER)
    assert 'id="sign-out"' in page.text and "a reader · reader" in page.text
    reply = client.post("/ui/sign-out", headers=DASHBOARD)
    assert reply.status_code == 200 and SESSION_COOKIE not in client.cookies
    assert client.get("/ui", headers=BROWSER, follow_redirects=False).status_code == 303


def test_the_audit_trail_records_sign_ins_without_the_token(master: Master) -> None:
    _, token = master.token("reader")
    master.sign_in(token)
    master.client.post("/ui/session", headers={"Authorization": "Bearer ffleet_" + "y" * 43})
    master.client.cookies.clear()
    reply = master.client.get(
        "/audit",
        params={"action": "POST /ui/session"},
        headers={"Authorization": f"Bearer {master.admin}"},
    )
    entries = reply.json()["entries"]
    assert {(e["actor_name"], e["role"], e["outcome"]) for e in entries} == {
        ("a reader", "reader", 200),
        ("unauthenticated", "-", 401),
    }
    assert token not in reply.text


def test_an_open_master_has_nothing_to_sign_in_to() -> None:
    store = open_store("memory")
    with TestClient(create_app(MasterSettings(), store)) as client:
        page = client.get("/ui/sign-in", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/ui"
        assert 'id="sign-out"' not in client.get("/ui").text
    store.close()

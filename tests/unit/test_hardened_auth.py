"""Hardening on an authenticating master: a stream key is shown only to those who own it, and
a rate limit counts each credential on its own, not the address it shares with others."""

from __future__ import annotations

from pathlib import Path

from starlette.testclient import TestClient

from ffleet.master.app import create_app
from tests.unit.test_authorization import enroll, issue, settings

OUTPUT = "rtmp://live.example/app/SECRET-KEY"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_stream_key_is_shown_to_its_owners_only(tmp_path: Path) -> None:
    with TestClient(create_app(settings(tmp_path))) as client:
        admin = (tmp_path / "admin-token").read_text().strip()
        owner, other, reader, enroller = (
            issue(client, admin, role)["token"]
            for role in ("submitter", "submitter", "reader", "enroll")
        )
        runner = enroll(client, enroller)
        job = client.post(
            "/jobs",
            json={"scenario": "360p-h264", "parameters": {"output": OUTPUT}},
            headers=bearer(owner),
        ).json()
        claimed = client.get(
            "/jobs/next", params={"node_id": runner["id"]}, headers=bearer(runner["token"])
        )
        assert claimed.json()["parameters"]["output"] == OUTPUT

        def sees_key(token: str) -> bool:
            pages = [
                client.get("/jobs", headers=bearer(token)),
                client.get(f"/jobs/{job['id']}", headers=bearer(token)),
                client.get("/results/export", headers=bearer(token)),
            ]
            text = "".join(page.text for page in pages if page.status_code == 200)
            assert "rtmp://live.example/app/" in text
            return "SECRET-KEY" in text

        assert sees_key(admin) and sees_key(owner)
        assert not sees_key(other) and not sees_key(reader)
        page = client.get(f"/ui/jobs/{job['id']}", headers=bearer(reader))
        assert page.status_code == 200 and "SECRET-KEY" not in page.text  # nor the dashboard
        # A node reads no listings (not its role): the claim is where it gets the key.
        assert client.get("/jobs", headers=bearer(runner["token"])).status_code == 403


def test_each_credential_has_its_own_rate(tmp_path: Path) -> None:
    app = create_app(settings(tmp_path, rate_limit=1, rate_burst=2))
    with TestClient(app) as client:  # every request comes from one address
        admin = (tmp_path / "admin-token").read_text().strip()
        reader = issue(client, admin, "reader")["token"]
        first = [client.get("/nodes", headers=bearer(reader)).status_code for _ in range(2)]
        assert first == [200, 200]
        assert client.get("/nodes", headers=bearer(reader)).status_code == 429
        assert client.get("/nodes", headers=bearer(admin)).status_code == 200  # another budget

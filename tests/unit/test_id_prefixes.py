"""Ids as unique prefixes: what a user copies from an 8-character table column works wherever
a job or node id is given, and an ambiguous one is refused with a reason."""

from __future__ import annotations

from starlette.testclient import TestClient

from ffleet.master.app import create_app
from ffleet.master.settings import MasterSettings


def test_unique_prefixes_name_jobs_and_nodes_and_ambiguous_ones_are_refused() -> None:
    with TestClient(create_app(MasterSettings(store_url="memory"))) as client:
        node = client.post("/nodes/register", json={"id": "node-abc"}).json()["id"]
        client.post("/nodes/register", json={"id": "node-abd"})
        job = client.post("/jobs", json={"scenario": "360p-h264"}).json()["id"]

        assert client.get(f"/jobs/{job[:8]}").json()["id"] == job
        assert client.post(f"/jobs/{job[:8]}/cancel").json()["status"] == "canceled"
        assert client.post(f"/jobs/{job[:6]}/retry").json()["status"] == "pending"
        assert client.get("/nodes/node-abc").json()["id"] == node
        drained = client.post("/nodes/node-abc/drain", json={"drain": True}).json()
        assert drained["id"] == node and drained["draining"] is True

        ambiguous = client.post("/nodes/node-ab/drain", json={"drain": True})
        assert ambiguous.status_code == 400
        assert "several nodes" in ambiguous.json()["error"]
        assert client.get("/jobs/zzzz").status_code == 404

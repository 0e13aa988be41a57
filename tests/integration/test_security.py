"""Security with real processes: enrolled agents over HTTPS and mTLS, a wrong CA refused, a
handshake without a client certificate refused, one node unable to act for another, and the
audit trail as `ffleet audit` shows it."""

from __future__ import annotations

import ssl
import stat
import subprocess
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ffleet import certs
from ffleet.cli import app as cli
from tests.integration.conftest import Fleet, MasterProcess, ffleet_executable, wait_until

TINY = "160x90-h264"
LONG = {"duration": 600}


def admin_token(tmp_path: Path) -> str:
    return (tmp_path / "admin-token").read_text().strip()


def authenticating(fleet: Fleet, tmp_path: Path, *args: str, **kwargs: object) -> MasterProcess:
    """A master with --auth required whose test client sends the admin token."""
    master = fleet.master(
        extra_args=[
            "--auth",
            "required",
            "--admin-token-file",
            str(tmp_path / "admin-token"),
            *args,
        ],
        **kwargs,
    )
    master.api.headers["Authorization"] = f"Bearer {admin_token(tmp_path)}"
    return master


def issue(master: MasterProcess, role: str) -> str:
    reply = master.api.post("/tokens", json={"role": role, "name": f"test {role}"})
    assert reply.status_code == 201, reply.text
    return str(reply.json()["token"])


def test_agents_enroll_and_work_over_mtls(fleet: Fleet, tmp_path: Path) -> None:
    files = tmp_path / "certs"
    certs.init(files, ["127.0.0.1", "localhost"])
    certs.issue_node(files, "agent1")
    trusted = ssl.create_default_context(cafile=str(files / "ca.pem"))
    trusted.load_cert_chain(str(files / "agent1.pem"), str(files / "agent1-key.pem"))
    master = authenticating(
        fleet,
        tmp_path,
        "--tls-cert",
        str(files / "master.pem"),
        "--tls-key",
        str(files / "master-key.pem"),
        "--tls-client-ca",
        str(files / "ca.pem"),
        scheme="https",
        client_options={"verify": trusted},
    )
    enroll = issue(master, "enroll")
    tls = ["--ca", str(files / "ca.pem"), "--cert", str(files / "agent1.pem")]
    tls += ["--key", str(files / "agent1-key.pem")]
    agent = fleet.agent(master, extra_args=[*tls, "--enroll-token", enroll])
    stored = agent.work_dir / "node-token"
    # Written just after the registration reply, so possibly after the master lists the node.
    wait_until(stored.exists, timeout=10, message="the node token to be stored")
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stored.read_text().strip() not in agent.log_text()  # never logged

    job = master.submit(TINY, parameters={"duration": 1})
    done = master.wait_job(job["id"], ["completed", "failed"])
    assert done["status"] == "completed", done

    # The CLI verifies the master too, with the same files.
    listed = subprocess.run(
        [ffleet_executable(), "jobs", "--master", master.url, *tls],
        capture_output=True,
        text=True,
        env={"FFLEET_TOKEN": admin_token(tmp_path), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    assert job["id"] in listed.stdout

    # mTLS: without a client certificate the handshake is refused.
    bare = ssl.create_default_context(cafile=str(files / "ca.pem"))
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{master.url}/health", verify=bare, timeout=5)

    # Another CA's certificate is not this master's: agent and CLI refuse to talk to it.
    other = tmp_path / "other"
    certs.init(other, ["127.0.0.1"])
    wrong = ["--ca", str(other / "ca.pem"), "--cert", str(files / "agent1.pem")]
    wrong += ["--key", str(files / "agent1-key.pem")]
    refused = subprocess.run(
        [ffleet_executable(), "jobs", "--master", master.url, *wrong],
        capture_output=True,
        text=True,
        env={"FFLEET_TOKEN": admin_token(tmp_path), "PATH": "/usr/bin:/bin", "COLUMNS": "200"},
        timeout=60,
    )
    assert refused.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr
    stranger = fleet.agent(
        master,
        name="stranger",
        wait=False,
        extra_args=[*wrong, "--enroll-token", enroll],
    )
    wait_until(
        lambda: "CERTIFICATE_VERIFY_FAILED" in stranger.log_text(),
        timeout=30,
        message="the agent with the wrong CA to refuse the master",
    )
    assert len(master.nodes()) == 1


def test_a_node_cannot_act_for_another_and_revocation_takes_it_out(
    fleet: Fleet, tmp_path: Path
) -> None:
    master = authenticating(fleet, tmp_path, "--backoff-base", "200ms", "--backoff-cap", "1s")
    enroll = issue(master, "enroll")
    args = ["--enroll-token", enroll, "--grace", "1s"]
    agents = [fleet.agent(master, name=f"agent{i}", extra_args=args) for i in range(2)]
    job = master.submit(TINY, parameters=LONG)
    running = master.wait_job(job["id"], ["running"])
    owner_id = running["node_id"]
    (owner,) = [a for a in agents if a.node_id == owner_id]
    (other,) = [a for a in agents if a is not owner]
    spoof = {"Authorization": f"Bearer {(other.work_dir / 'node-token').read_text().strip()}"}
    attempt = running["attempt"]
    with httpx.Client(base_url=master.url, headers=spoof, timeout=10) as thief:
        for method, path, body in [
            (
                "POST",
                "/results",
                {"job_id": job["id"], "node_id": owner_id, "attempt": attempt, "status": "failed"},
            ),
            ("POST", f"/nodes/{owner_id}/heartbeat", {"jobs": []}),
            (
                "POST",
                f"/jobs/{job['id']}/release",
                {"node_id": owner_id, "attempt": attempt, "reason": "stolen"},
            ),
        ]:
            reply = thief.request(method, path, json=body)
            assert reply.status_code == 403, (path, reply.text)
    after = master.job(job["id"])
    assert (after["status"], after["node_id"], after["attempt"]) == ("running", owner_id, attempt)
    assert [a["outcome"] for a in after["attempts"]] == [None]

    credentials = master.api.get("/tokens").json()["tokens"]
    (owners,) = [c for c in credentials if c["node_id"] == owner_id]
    assert master.api.post(f"/tokens/{owners['id']}/revoke").status_code == 200
    moved = wait_until(
        lambda: (
            (found := master.job(job["id"]))["status"] == "running"
            and found["node_id"] == other.node_id
            and found
        ),
        timeout=30,
        message="the revoked node's job to run on the other node",
    )
    assert "lost its credential" in moved["attempts"][0]["error"]
    assert owner.wait(timeout=30) in (0, 1)  # the revoked agent stops on its own
    assert "refused this node's credential" in owner.log_text()
    master.api.post(f"/jobs/{job['id']}/cancel")


def test_ffleet_audit_shows_who_changed_or_was_refused_what(fleet: Fleet, tmp_path: Path) -> None:
    master = authenticating(fleet, tmp_path)
    admin, reader = admin_token(tmp_path), issue(master, "reader")
    job = master.submit(TINY, requirements={"gpu_model": "no such GPU"})
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert master.api.post("/jobs", json={"scenario": TINY}, headers=as_reader).status_code == 403
    assert master.api.post(f"/jobs/{job['id']}/cancel").status_code == 200

    def audit(token: str, *args: str) -> tuple[int, str]:
        outcome = CliRunner().invoke(
            cli,
            ["audit", "--master", master.url, "--token", token, *args],
            env={"COLUMNS": "300"},
        )
        return outcome.exit_code, outcome.output

    code, out = audit(admin, "--since", "1h")
    assert code == 0, out
    rows = [line for line in out.splitlines() if "POST /" in line]
    cancel = next(row for row in rows if "POST /jobs/{job_id}/cancel" in row)
    assert job["id"] in cancel and "admin" in cancel and "200" in cancel
    assert any("test reader" in row and "403" in row for row in rows)
    assert admin not in out and reader not in out  # never a token

    code, out = audit(admin, "--actor", "test reader", "--action", "POST /jobs")
    assert code == 0 and "1 audit entry" in out and "403" in out
    code, out = audit(admin, "--since", "1ms")
    assert code == 0 and "0 audit entries" in out
    code, out = audit(reader)
    assert code == 1 and "HTTP 403" in out

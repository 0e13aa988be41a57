"""Secure by default: open only on loopback without credentials, refused when exposed, and the
token commands that bootstrap a fleet straight on its store."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from ffleet.cli import app as cli
from ffleet.master.app import create_app
from ffleet.master.exposure import StartRefused
from ffleet.master.settings import MasterSettings
from ffleet.settings import SettingsError
from ffleet.store import open_store
from tests.processes import wait_until

runner = CliRunner()


def sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ffleet.db'}"


def test_loopback_without_credentials_runs_open_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "ffleet.master")
    with TestClient(create_app(MasterSettings(store_url=sqlite(tmp_path)))) as client:
        assert client.get("/jobs").status_code == 200
        assert client.post("/jobs", json={"scenario": "720p-h264"}).status_code == 201
    assert sum("open to local users" in r.message for r in caplog.records) == 1


def test_credentials_in_the_store_turn_authentication_on(tmp_path: Path) -> None:
    store = open_store(sqlite(tmp_path))
    _, token = store.create_credential("reader", "r", time.time())
    store.close()
    settings = MasterSettings(store_url=sqlite(tmp_path), admin_token_file=tmp_path / "admin")
    with TestClient(create_app(settings)) as client:
        assert client.get("/jobs").status_code == 401
        assert client.get("/jobs", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_an_exposed_master_without_authentication_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StartRefused, match=r"--auth required.*--insecure"):
        create_app(MasterSettings(host="0.0.0.0", store_url=sqlite(tmp_path)))
    outcome = runner.invoke(
        cli, ["master", "--host", "0.0.0.0", "--store", sqlite(tmp_path)], env={"COLUMNS": "200"}
    )
    assert outcome.exit_code == 2
    assert "--auth required" in outcome.output and "--insecure" in outcome.output


def test_insecure_runs_open_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = MasterSettings(host="0.0.0.0", store_url=sqlite(tmp_path), insecure=True)
    with TestClient(create_app(settings)) as client:
        assert client.get("/jobs").status_code == 200
    assert any("WITHOUT AUTHENTICATION" in r.message for r in caplog.records)
    with pytest.raises(SettingsError, match="contradict"):
        MasterSettings(insecure=True, auth="required")


def test_an_insecure_master_keeps_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "ffleet.master")

    def warnings() -> int:
        return sum("WITHOUT AUTHENTICATION" in r.message for r in caplog.records)

    settings = MasterSettings(
        host="0.0.0.0", store_url=sqlite(tmp_path), insecure=True, insecure_warn_s=0.05
    )
    with TestClient(create_app(settings)):
        wait_until(lambda: warnings() >= 3, timeout=5, message="the warning to repeat")
    refused = runner.invoke(
        cli, ["master", "--insecure", "--insecure-warn-interval", "0s"], env={"COLUMNS": "200"}
    )
    assert refused.exit_code == 2 and "--insecure-warn-interval must be more than 0" in (
        refused.output
    )


def test_token_commands_work_on_the_store(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    made = runner.invoke(cli, ["token", "create", "--role", "submitter", "--store", url])
    assert made.exit_code == 0, made.output
    token = made.stdout.strip()
    assert token.startswith("ffleet_") and "\n" not in token  # stdout: the token alone
    listed = runner.invoke(cli, ["token", "list", "--store", url], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "submitter" in listed.stdout and token not in listed.stdout
    store = open_store(url)
    credential = store.find_credential(token)
    store.close()
    assert credential is not None and credential.usable(time.time())
    gone = runner.invoke(cli, ["token", "revoke", credential.id, "--store", url])
    assert gone.exit_code == 0 and "revoked" in gone.stdout
    store = open_store(url)
    revoked = store.find_credential(token)
    store.close()
    assert revoked is not None and not revoked.usable(time.time())
    refused = runner.invoke(cli, ["token", "create", "--role", "node", "--store", url])
    assert refused.exit_code == 2


def test_token_create_with_an_expiry(tmp_path: Path) -> None:
    url = sqlite(tmp_path)
    made = runner.invoke(
        cli, ["token", "create", "--role", "reader", "--expires", "30d", "--store", url]
    )
    assert made.exit_code == 0, made.output
    store = open_store(url)
    credential = store.find_credential(made.stdout.strip())
    store.close()
    assert credential is not None and credential.expires_at is not None
    assert abs(credential.expires_at - time.time() - 30 * 86400) < 60

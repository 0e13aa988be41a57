"""The compose stack, parsed (no container engine runs here): the services it promises, each
with a healthcheck, start order on health, files that exist, and only settings ffleet reads."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ffleet.agent.child_process import TERM_GRACE_S
from ffleet.durations import parse_duration
from tests.deploy.support import DEPLOY, default, envvars, parsed
from tests.deploy.test_container import healthcheck_command

COMPOSE = DEPLOY / "compose.yaml"
AGENTS = ("agent-1", "agent-2")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def interpolated(value: str) -> str:
    """`${NAME:-default}` as compose reads it with NAME unset."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", value)


def test_stack_has_the_promised_services(services: dict[str, Any]) -> None:
    assert set(services) == {
        "master",
        "postgres",
        *AGENTS,
        "prometheus",
        "grafana",
        "victoriametrics",
    }


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert isinstance(test, list) and test[0] in ("CMD", "CMD-SHELL"), name


def test_master_healthcheck_is_the_images_own(services: dict[str, Any]) -> None:
    assert services["master"]["healthcheck"]["test"] == ["CMD", *healthcheck_command()]


def test_services_start_once_what_they_need_is_healthy(services: dict[str, Any]) -> None:
    assert services["master"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for agent in AGENTS:
        assert services[agent]["depends_on"] == {"master": {"condition": "service_healthy"}}


def test_every_referenced_file_exists(services: dict[str, Any]) -> None:
    build = services["master"]["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    assert (context / build["dockerfile"]).is_file()
    mounts = [m for s in services.values() for m in s.get("volumes", []) if m.startswith(".")]
    assert mounts, "Prometheus and Grafana read their configuration from bind mounts"
    for mount in mounts:
        assert (COMPOSE.parent / mount.split(":")[0]).exists(), mount


def test_agents_run_the_image_the_master_builds(services: dict[str, Any]) -> None:
    for agent in AGENTS:
        assert services[agent]["image"] == services["master"]["image"]
        assert services[agent]["command"] == ["agent"]


@pytest.mark.parametrize("name", ["master", *AGENTS])
def test_ffleet_variables_are_ones_the_command_reads(services: dict[str, Any], name: str) -> None:
    command = "master" if name == "master" else "agent"
    used = {key for key in services[name]["environment"] if key.startswith("FFLEET_")}
    assert used <= envvars(command), sorted(used - envvars(command))


@pytest.mark.parametrize("name", ["master", *AGENTS])
def test_settings_parse_as_the_command_expects(
    services: dict[str, Any], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    command = "master" if name == "master" else "agent"
    env = {key: interpolated(str(value)) for key, value in services[name]["environment"].items()}
    params = parsed(command, env, monkeypatch)
    if command == "agent":
        assert params["register"] is True
        assert params["label"] == ["site=compose", f"agent={name[-1]}"]


def test_no_ffleet_variable_outside_the_ffleet_services(services: dict[str, Any]) -> None:
    others = {k: v for k, v in services.items() if k != "master" and k not in AGENTS}
    assert "FFLEET_" not in yaml.safe_dump(others)


def test_agents_each_own_a_work_dir_and_a_stop_grace_above_theirs(
    services: dict[str, Any],
) -> None:
    volumes = set()
    for agent in AGENTS:
        service = services[agent]
        work_dir = service["environment"]["FFLEET_WORK_DIR"]
        (volume,) = [v.split(":")[0] for v in service["volumes"] if v.endswith(f":{work_dir}")]
        volumes.add(volume)
        grace = service["environment"].get("FFLEET_GRACE", default("agent", "FFLEET_GRACE"))
        grace_s = parse_duration(str(grace))
        assert parse_duration(service["stop_grace_period"]) >= grace_s + TERM_GRACE_S + 5
        assert service["environment"]["FFLEET_REGISTER"] == "true"
    assert len(volumes) == len(AGENTS), "two agents on one work dir: the second refuses to start"


def test_master_and_agents_meet_on_postgres(services: dict[str, Any]) -> None:
    store = urlsplit(interpolated(services["master"]["environment"]["FFLEET_STORE"]))
    postgres = services["postgres"]["environment"]
    assert store.scheme == "postgresql"
    assert store.hostname == "postgres"
    assert store.username == postgres["POSTGRES_USER"]
    assert store.password == interpolated(postgres["POSTGRES_PASSWORD"])
    assert store.path == f"/{postgres['POSTGRES_DB']}"
    port = services["master"]["environment"]["FFLEET_PORT"]
    for agent in AGENTS:
        assert services[agent]["environment"]["FFLEET_MASTER"] == f"http://master:{port}"


def test_prometheus_scrapes_the_master_and_writes_to_victoriametrics(
    services: dict[str, Any],
) -> None:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    port = services["master"]["environment"]["FFLEET_PORT"]
    (master,) = [job for job in config["scrape_configs"] if job["job_name"] == "ffleet-master"]
    assert master["metrics_path"] == "/metrics"
    assert master["static_configs"] == [{"targets": [f"master:{port}"]}]
    (remote,) = config["remote_write"]
    assert urlsplit(remote["url"]).hostname == "victoriametrics"


def test_grafana_data_sources_name_services_of_the_stack(services: dict[str, Any]) -> None:
    provisioning = DEPLOY / "grafana" / "provisioning" / "datasources"
    (file,) = provisioning.glob("*.yaml")
    sources = yaml.safe_load(file.read_text())["datasources"]
    hosts = {urlsplit(source["url"]).hostname for source in sources}
    assert hosts == {"prometheus", "victoriametrics"} and hosts <= set(services)

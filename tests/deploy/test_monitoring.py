"""deploy/prometheus and deploy/grafana: promtool accepts the config and the rules and passes
the rules' unit tests; the dashboards are dashboard JSON on the provisioned data sources, and
every PromQL expression (dashboards and alerts) parses and names only metrics ffleet exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from starlette.testclient import TestClient

from ffleet.agent.exporter import AgentExporter
from ffleet.master.app import create_app
from ffleet.master.archive import RESULT_METRICS
from ffleet.master.settings import MasterSettings
from tests.deploy.support import DEPLOY, unavailable

PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
PROMETHEUS_OWN = {"up"}  # what Prometheus records about each target itself
# Grafana's variables, replaced by something of the right kind before PromQL is parsed.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$node": "n", "$scenario": "s"}
_NOT_NAMES = {"and", "or", "unless", "offset", "bool", "inf", "nan"}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    if tool is None:
        unavailable("promtool is not installed (Debian package prometheus)")
    assert tool is not None
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


def family_names(families: Any) -> set[str]:
    """The sample names Prometheus stores for each metric family of a registry."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum")}
    names: set[str] = set()
    for family in families:
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


@pytest.fixture(scope="module")
def exported() -> set[str]:
    """Every metric name the master (with its archive), the agent and the archive write."""
    settings = MasterSettings(store_url="memory", victoriametrics_url="http://127.0.0.1:9")
    with TestClient(create_app(settings)) as client:
        master = client.app.state.master  # type: ignore[attr-defined]
        names = family_names(master.metrics.registry.collect())
    names |= family_names(AgentExporter(lambda: "n", list).registry.collect())
    return names | set(RESULT_METRICS)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers,
    ranges, grouping clauses, function calls, keywords and numbers are taken out."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    words = re.findall(r"(?<![\w.])([A-Za-z_:][\w:]*)(\s*\()?", text)
    return {word for word, call in words if not call and word.lower() not in _NOT_NAMES}


def dashboard(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def dashboard_exprs() -> list[tuple[str, str]]:
    return [
        (f"{path.name}: {panel['title']}", target["expr"])
        for path in DASHBOARDS
        for panel in dashboard(path)["panels"]
        for target in panel["targets"]
    ]


def alert_exprs() -> list[tuple[str, str]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [(rule["alert"], rule["expr"]) for group in groups for rule in group["rules"]]


def test_promtool_accepts_the_config_and_the_rules() -> None:
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "alerts.yml")):
        checked = promtool(*args[:2], str(PROMETHEUS / args[2]))
        assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_and_stays_quiet_as_its_unit_tests_say() -> None:
    tests = PROMETHEUS / "tests" / "alerts_test.yml"
    ran = promtool("test", "rules", str(tests))
    assert ran.returncode == 0, ran.stdout + ran.stderr
    tested = set(re.findall(r"alertname: (\w+)", tests.read_text()))
    assert tested == {name for name, _ in alert_exprs()}


def test_prometheus_scrapes_the_agents_metrics_port_of_the_stack() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    port = compose["x-agent"]["environment"]["FFLEET_METRICS_PORT"]
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (agents,) = [job for job in config["scrape_configs"] if job["job_name"] == "ffleet-agents"]
    assert agents["static_configs"] == [{"targets": [f"agent-1:{port}", f"agent-2:{port}"]}]
    assert config["rule_files"] == ["alerts.yml"]


def test_dashboards_are_provisioned_dashboard_json_on_known_data_sources() -> None:
    assert {path.stem for path in DASHBOARDS} == {
        "ffleet-overview",
        "ffleet-results",
        "ffleet-node",
    }
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yaml").read_text())
    uids = {source["uid"] for source in sources["datasources"]}
    (provider,) = yaml.safe_load((GRAFANA / "provisioning/dashboards/dashboards.yaml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file"
    for path in DASHBOARDS:
        board = dashboard(path)
        assert board["uid"] == path.stem and board["title"] and board["schemaVersion"] >= 36
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids, panel["title"]
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] in uids


def test_every_expression_parses_and_names_only_exported_metrics(
    exported: set[str], tmp_path: Path
) -> None:
    expressions = dashboard_exprs() + alert_exprs()
    for path in DASHBOARDS:
        for variable in dashboard(path)["templating"]["list"]:
            (metric,) = re.findall(r"label_values\((\w+), *\w+\)", variable["query"]["query"])
            assert metric in exported, f"{path.name}: variable {variable['name']}"
    for where, expr in expressions:
        names = metric_names(expr)
        assert names, f"{where}: no metric found in {expr!r}"
        assert names <= exported | PROMETHEUS_OWN, f"{where}: {sorted(names - exported)}"
    rules = []
    for number, (_, expr) in enumerate(expressions):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"ffleet_check_{number}", "expr": expr})
    path = tmp_path / "expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "expressions", "rules": rules}]}))
    parsed = promtool("check", "rules", str(path))
    assert parsed.returncode == 0, parsed.stdout + parsed.stderr


def test_the_name_finder_sees_through_promql_syntax() -> None:
    expr = (
        'sum by (le, route) (rate(ffleet_http_request_duration_seconds_bucket{route!="/x"}[5m]))'
        ' / on (instance) group_left (node) ffleet_agent_node_info{node="$node"} > 0.5'
        " and ffleet_jobs offset 15m"
    )
    assert metric_names(expr) == {
        "ffleet_http_request_duration_seconds_bucket",
        "ffleet_agent_node_info",
        "ffleet_jobs",
    }

"""The Helm chart: values.yaml obeys values.schema.json, the rendered copy under
deploy/kubernetes/ is what the chart renders, and what it renders is valid Kubernetes that wires
masters, agents, the store Secret and GPUs together the way ffleet reads its settings."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import yaml

from ffleet.agent.child_process import TERM_GRACE_S
from ffleet.durations import parse_duration
from tests.deploy.helm_render import (
    CHART,
    HEADER,
    TemplateError,
    render_chart,
    render_template,
)
from tests.deploy.support import DEPLOY, default, dev_module, envvars, parsed

RENDERED = DEPLOY / "kubernetes" / "ffleet.yaml"
KUBERNETES_VERSION = "1.30.0"  # the oldest release the chart is meant for


def default_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def manifests(values: dict[str, Any] | None = None) -> dict[tuple[str, str], Any]:
    docs = [doc for doc in yaml.safe_load_all(render_chart(values)) if doc]
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in docs}


def schema_errors(values: dict[str, Any]) -> list[str]:
    jsonschema = dev_module("jsonschema")
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(values)]


def container(doc: dict[str, Any]) -> dict[str, Any]:
    (only,) = doc["spec"]["template"]["spec"]["containers"]
    found: dict[str, Any] = only
    return found


def test_default_values_obey_the_schema() -> None:
    assert schema_errors(default_values()) == []


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        (("master", "replicas"), 0),
        (("agents", "settings", "FFLEET_MASTER"), "http://elsewhere"),  # the chart sets it
        (("master", "settings", "FFLEET_STORE"), "sqlite:///x.db"),  # from the Secret only
        (("master", "settings", "grace"), "30s"),  # not an FFLEET_* name
        (("agents", "gpu", "gpus"), 0),
        (("agents", "cpu", "labels"), "pool"),  # FFLEET_LABEL wants KEY=VALUE
        (("store", "url"), "sqlite:///ffleet.db"),  # several masters need PostgreSQL
        (("image", "pullPolicy"), "Sometimes"),
        (("master", "sidecars"), []),  # unknown keys are typos
        (("agents", "metrics", "port"), 0),
        (("agents", "workDir", "size"), "a lot"),
        (("agents", "gpu", "replicas"), -1),
    ],
)
def test_schema_refuses_bad_values(path: tuple[str, ...], bad: object) -> None:
    values = copy.deepcopy(default_values())
    parent = values
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = bad
    assert schema_errors(values) != []


def test_rendered_copy_is_what_the_chart_renders() -> None:
    assert RENDERED.read_text() == HEADER + render_chart(), (
        "deploy/kubernetes/ffleet.yaml is stale: "
        "python -m tests.deploy.helm_render > deploy/kubernetes/ffleet.yaml"
    )


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"agents": {"gpu": {"enabled": False}}, "store": {"createSecret": False}},
        {"agents": {"cpu": {"enabled": False}}},
        {"agents": {"metrics": {"enabled": True}, "workDir": {"storageClassName": "fast"}}},
    ],
    ids=["defaults", "no-gpu-external-secret", "gpu-only", "metrics-storage-class"],
)
def test_rendered_manifests_are_valid_kubernetes(changes: dict[str, Any]) -> None:
    kubernetes_validate = dev_module("kubernetes_validate")
    values = merged(default_values(), changes)
    for doc in manifests(values).values():
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def merged(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in changes.items():
        result[key] = merged(result[key], value) if isinstance(value, dict) else value
    return result


def test_switches_leave_out_what_they_turn_off() -> None:
    values = merged(
        default_values(), {"agents": {"gpu": {"enabled": False}}, "store": {"createSecret": False}}
    )
    kinds = {kind for kind, _ in manifests(values)}
    assert ("StatefulSet", "ffleet-agent-gpu") not in manifests(values)
    assert ("Service", "ffleet-agent-gpu") not in manifests(values) and "Secret" not in kinds
    assert {("StatefulSet", "ffleet-agent-gpu"), ("Secret", "ffleet-store")} <= set(manifests())


def test_masters_are_replicated_and_probed_on_health() -> None:
    values = default_values()
    docs = manifests()
    deployment = docs[("Deployment", "ffleet-master")]
    assert deployment["spec"]["replicas"] == values["master"]["replicas"]
    master = container(deployment)
    (port,) = master["ports"]
    assert port == {"name": "http", "containerPort": values["master"]["port"]}
    # Ready only while the store takes writes; alive while the process answers.
    assert master["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert master["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    env = {item["name"]: item for item in master["env"]}
    assert env["FFLEET_PORT"]["value"] == str(values["master"]["port"])
    assert env["FFLEET_HOST"]["value"] == "0.0.0.0"
    service = docs[("Service", "ffleet-master")]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_store_url_comes_from_the_secret_the_chart_creates() -> None:
    docs = manifests()
    master = container(docs[("Deployment", "ffleet-master")])
    (store,) = [item for item in master["env"] if item["name"] == "FFLEET_STORE"]
    reference = store["valueFrom"]["secretKeyRef"]
    secret = docs[("Secret", reference["name"])]
    assert secret["stringData"][reference["key"]] == default_values()["store"]["url"]
    assert "CHANGE-ME" not in yaml.safe_dump(docs[("ConfigMap", "ffleet-master")])


def test_agents_reach_the_master_service() -> None:
    docs = manifests()
    settings = docs[("ConfigMap", "ffleet-agent")]["data"]
    service = docs[("Service", "ffleet-master")]
    expected = f"http://{service['metadata']['name']}:{service['spec']['ports'][0]['port']}"
    assert settings["FFLEET_MASTER"] == expected
    assert settings["FFLEET_REGISTER"] == "true"
    for workload in (("StatefulSet", "ffleet-agent-cpu"), ("StatefulSet", "ffleet-agent-gpu")):
        agent = container(docs[workload])
        assert agent["args"] == ["agent"]
        assert agent["envFrom"] == [
            {"configMapRef": {"name": "ffleet-agent"}},
            {"secretRef": {"name": "ffleet-enroll", "optional": True}},  # the enrollment token
        ]
        mounts = {m["mountPath"]: m["name"] for m in agent["volumeMounts"]}
        assert settings["FFLEET_WORK_DIR"] in mounts


def test_gpu_agents_ask_the_device_plugin_and_follow_the_node_selector() -> None:
    gpu = default_values()["agents"]["gpu"]
    pool = manifests()[("StatefulSet", "ffleet-agent-gpu")]
    resources = container(pool)["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == gpu["gpus"]
    assert pool["spec"]["replicas"] == gpu["replicas"]
    pod = pool["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == gpu["nodeSelector"]
    # At most one GPU agent per node, as a DaemonSet placed them.
    (spread,) = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert (
        spread["labelSelector"]["matchLabels"].items()
        <= pool["spec"]["selector"]["matchLabels"].items()
    )


AGENT_POOLS = (("StatefulSet", "ffleet-agent-cpu"), ("StatefulSet", "ffleet-agent-gpu"))


def test_an_agents_work_dir_outlives_its_pod() -> None:
    """The work dir holds the node id and the node credential: on a claim of its own per pod
    (not an emptyDir), a restarted agent is the same node and does not enroll again."""
    values = default_values()
    docs = manifests()
    work_dir = docs[("ConfigMap", "ffleet-agent")]["data"]["FFLEET_WORK_DIR"]
    for workload in AGENT_POOLS:
        spec = docs[workload]["spec"]
        mounts = {m["mountPath"]: m["name"] for m in container(docs[workload])["volumeMounts"]}
        (claim,) = spec["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == mounts[work_dir]
        pod_volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]}
        assert mounts[work_dir] not in pod_volumes  # not an emptyDir of the pod
        requested = claim["spec"]["resources"]["requests"]["storage"]
        assert requested == values["agents"]["workDir"]["size"]
        assert "storageClassName" not in claim["spec"]  # the cluster's default
        assert docs[("Service", spec["serviceName"])]["spec"]["clusterIP"] == "None"
    chosen = merged(values, {"agents": {"workDir": {"storageClassName": "fast-ssd"}}})
    claim = manifests(chosen)[AGENT_POOLS[0]]["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["storageClassName"] == "fast-ssd"


def test_agent_metrics_are_off_unless_asked_then_exposed_for_prometheus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for workload in AGENT_POOLS:
        assert "ports" not in container(manifests()[workload])
    assert "FFLEET_METRICS_PORT" not in manifests()[("ConfigMap", "ffleet-agent")]["data"]
    values = merged(default_values(), {"agents": {"metrics": {"enabled": True, "port": 9200}}})
    assert schema_errors(values) == []
    docs = manifests(values)
    settings = docs[("ConfigMap", "ffleet-agent")]["data"]
    env = {**settings, "FFLEET_LABEL": "pool=cpu"}
    params = parsed("agent", env, monkeypatch)
    assert (params["metrics_port"], params["metrics_host"]) == (9200, "0.0.0.0")
    for workload in AGENT_POOLS:
        (port,) = container(docs[workload])["ports"]
        assert port == {"name": "metrics", "containerPort": 9200}
        annotations = docs[workload]["spec"]["template"]["metadata"]["annotations"]
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": "9200",
            "prometheus.io/path": "/metrics",
        }
        service = docs[("Service", docs[workload]["spec"]["serviceName"])]
        assert service["spec"]["ports"] == [
            {"name": "metrics", "port": 9200, "targetPort": "metrics"}
        ]
    for chart_set in ("FFLEET_METRICS_PORT", "FFLEET_METRICS_HOST"):
        clash = merged(default_values(), {"agents": {"settings": {chart_set: "1"}}})
        assert schema_errors(clash) != []


def test_every_ffleet_variable_is_one_the_command_reads() -> None:
    docs = manifests()
    for workload, command in (
        (("Deployment", "ffleet-master"), "master"),
        (("StatefulSet", "ffleet-agent-cpu"), "agent"),
        (("StatefulSet", "ffleet-agent-gpu"), "agent"),
    ):
        spec = container(docs[workload])
        names = {item["name"] for item in spec["env"] if item["name"].startswith("FFLEET_")}
        for source in spec.get("envFrom", []):
            if "configMapRef" in source:
                names |= set(docs[("ConfigMap", source["configMapRef"]["name"])]["data"])
            else:  # a Secret the user creates: the enrollment token's
                names.add("FFLEET_ENROLL_TOKEN")
        assert names <= envvars(command), f"{workload}: {sorted(names - envvars(command))}"


@pytest.mark.parametrize(
    ("workload", "command"),
    [
        (("Deployment", "ffleet-master"), "master"),
        (("StatefulSet", "ffleet-agent-cpu"), "agent"),
        (("StatefulSet", "ffleet-agent-gpu"), "agent"),
    ],
)
def test_settings_parse_as_the_command_expects(
    workload: tuple[str, str], command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the pod's environment would be (ConfigMaps, then env:), as the command parses it."""
    docs = manifests()
    spec = container(docs[workload])
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        if "configMapRef" in source:  # the other is the enrollment token's Secret (optional)
            env |= docs[("ConfigMap", source["configMapRef"]["name"])]["data"]
    for item in spec["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            env[item["name"]] = default_values()["store"]["url"]  # the Secret's value
    env = {key: value for key, value in env.items() if key.startswith("FFLEET_")}
    params = parsed(command, env, monkeypatch)
    if command == "agent":
        assert params["register"] is True
        assert params["label"] and all("=" in label for label in params["label"])
    else:
        assert params["port"] == default_values()["master"]["port"]


def test_pods_stop_after_the_agents_grace() -> None:
    values = default_values()
    grace = values["agents"]["settings"].get("FFLEET_GRACE", default("agent", "FFLEET_GRACE"))
    needed_s = parse_duration(str(grace)) + TERM_GRACE_S + 5
    assert values["agents"]["terminationGracePeriodSeconds"] >= needed_s


def test_renderer_trims_like_go_templates() -> None:
    source = "a:\n{{- range $k, $v := .Values.m }}\n  {{ $k }}: {{ $v | quote }}\n{{- end }}\n"
    assert render_template(source, {"m": {"y": 2, "x": True}}) == 'a:\n  x: "true"\n  y: "2"\n'


@pytest.mark.parametrize(
    "source",
    ["{{ .Values.missing }}", "{{ .Values.x | upper }}", "{{ if .Values.x }}", "{{ include }}"],
)
def test_renderer_refuses_what_it_cannot_render_faithfully(source: str) -> None:
    with pytest.raises(TemplateError):
        render_template(source, {"x": "1"})

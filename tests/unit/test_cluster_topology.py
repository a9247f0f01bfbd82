"""The three-node broker cluster is the same in compose, Kubernetes and services.sh.

No Docker or Kubernetes here: the files are parsed and checked against each other and
against what `deploy/local/services.sh cluster env` (the cluster the e2e test runs) prints.
"""

from __future__ import annotations

import re
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import yaml

from broker.addresses import split_urls
from dossierflow.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
K8S = ROOT / "deploy" / "k8s"


def _yaml(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _hosts(url_list: str) -> list[tuple[str, int]]:
    parts = [urllib.parse.urlsplit(u) for u in split_urls(url_list)]
    return [(p.hostname or "", p.port or 0) for p in parts]


def _peers(conf: str) -> list[str]:
    return re.findall(r"^cluster_formation\.classic_config\.nodes\.\d+ = (\S+)$", conf, re.M)


def _local_cluster_env() -> dict[str, str]:
    done = subprocess.run(
        ["bash", str(ROOT / "deploy/local/services.sh"), "cluster", "env"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return dict(re.findall(r"^export DOSSIERFLOW_(\w+)='?([^'\n]*)'?$", done.stdout, re.M))


def test_compose_runs_three_nodes_that_know_each_other() -> None:
    services = _yaml(COMPOSE / "compose.yaml")[0]["services"]
    nodes = {name: s for name, s in services.items() if "hostname" in s}  # the setup has none
    assert sorted(nodes) == ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]
    assert [s["hostname"] for s in nodes.values()] == list(nodes)
    cookies = {s["environment"]["RABBITMQ_ERLANG_COOKIE"] for s in nodes.values()}
    assert len(cookies) == 1, "the nodes must share one Erlang cookie"
    conf = (COMPOSE / "rabbitmq-cluster.conf").read_text()
    assert _peers(conf) == [f"rabbit@{name}" for name in nodes]
    for node in nodes.values():
        mounts = [v.split(":")[:2] for v in node["volumes"]]
        assert ["./rabbitmq-cluster.conf", "/etc/rabbitmq/conf.d/20-cluster.conf"] in mounts
        assert "depends_on" not in node, "nodes start together: an order can deadlock a restart"
    data = [v.split(":")[0] for s in nodes.values() for v in s["volumes"] if "data" in v]
    assert len(set(data)) == 3
    assert set(data) <= set(_yaml(COMPOSE / "compose.yaml")[0]["volumes"])
    for mount in ("../rabbitmq/enabled_plugins", "./rabbitmq-cluster.conf"):
        assert (COMPOSE / mount).resolve().is_file(), mount


def test_compose_publishes_the_ports_of_the_local_cluster() -> None:
    services = _yaml(COMPOSE / "compose.yaml")[0]["services"]
    local = _local_cluster_env()
    published = {
        int(host): int(inner)
        for name in ("rabbitmq-1", "rabbitmq-2", "rabbitmq-3")
        for _ip, host, inner in (p.split(":") for p in services[name]["ports"])
    }
    assert [port for _, port in _hosts(local["AMQP_URL"])] == [5681, 5682, 5683]
    assert {port: 5672 for _, port in _hosts(local["AMQP_URL"])}.items() <= published.items()
    assert {port: 15672 for _, port in _hosts(local["RABBITMQ_API"])}.items() <= published.items()
    assert local["QUORUM_REPLICAS"] == "3"


def test_compose_clients_get_every_node_and_three_replicas() -> None:
    services = _yaml(COMPOSE / "compose.yaml")[0]["services"]
    nodes = [n for n, s in services.items() if "hostname" in s]
    assert nodes == ["rabbitmq-1", "rabbitmq-2", "rabbitmq-3"]
    clients = [s for s in services.values() if s.get("image", "").startswith("dossierflow")]
    assert clients
    for client in clients:
        env = client["environment"]
        assert _hosts(env["DOSSIERFLOW_AMQP_URL"]) == [(n, 5672) for n in nodes]
        if "DOSSIERFLOW_RABBITMQ_API" in env:  # the dispatcher's sweeper; a connector has none
            assert _hosts(env["DOSSIERFLOW_RABBITMQ_API"]) == [(n, 15672) for n in nodes]
        settings = Settings.from_env(env)
        assert settings.quorum_replicas == len(nodes)
        assert all(client["depends_on"][n]["condition"] == "service_healthy" for n in nodes)
        # The logins exist (and guest is gone) before any process connects.
        setup = client["depends_on"]["rabbitmq-setup"]["condition"]
        assert setup == "service_completed_successfully"
    assert "DOSSIERFLOW_RABBITMQ_API" in services["dispatcher"]["environment"]


def test_compose_processes_log_in_as_themselves() -> None:
    services = _yaml(COMPOSE / "compose.yaml")[0]["services"]
    users = {
        name: {urllib.parse.urlsplit(u).username for u in split_urls(env["DOSSIERFLOW_AMQP_URL"])}
        for name, s in services.items()
        if "DOSSIERFLOW_AMQP_URL" in (env := s.get("environment", {}))
    }
    assert users == {"dispatcher": {"dispatcher"}, "worker-office1": {"connector-office1"}}
    setup = services["rabbitmq-setup"]
    script = setup["command"][0]
    for step in ("import_definitions", "service-user.sh dispatcher", "office-user.sh office1"):
        assert step in script, step
    assert "delete_user guest" in script
    mounts = [v.split(":")[:2] for v in setup["volumes"]]
    assert ["../rabbitmq", "/deploy/rabbitmq"] in mounts
    assert (COMPOSE / "../rabbitmq/service-user.sh").resolve().is_file()
    cookies = {
        s["environment"]["RABBITMQ_ERLANG_COOKIE"] for s in services.values() if "hostname" in s
    }
    assert cookies == {setup["environment"]["RABBITMQ_ERLANG_COOKIE"]}


def test_kubernetes_runs_the_same_three_nodes() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _yaml(K8S / "rabbitmq/cluster.yaml")}
    sts = docs[("StatefulSet", "rabbitmq")]["spec"]
    assert sts["replicas"] == 3
    assert sts["podManagementPolicy"] == "Parallel"
    headless = docs[("Service", "rabbitmq-headless")]["spec"]
    assert sts["serviceName"] == "rabbitmq-headless" and headless["clusterIP"] == "None"
    assert headless["publishNotReadyAddresses"] is True
    pods = [f"rabbitmq-{i}.rabbitmq-headless.rabbitmq.svc" for i in range(sts["replicas"])]
    conf = docs[("ConfigMap", "rabbitmq-cluster")]["data"]["20-cluster.conf"]
    assert _peers(conf) == [f"rabbit@{pod}.cluster.local" for pod in pods]
    (container,) = sts["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["RABBITMQ_NODENAME"]["value"].endswith(
        ".rabbitmq-headless.rabbitmq.svc.cluster.local"
    )
    cookie = env["RABBITMQ_ERLANG_COOKIE"]["valueFrom"]["secretKeyRef"]
    assert ("Secret", cookie["name"]) in docs
    assert docs[("PodDisruptionBudget", "rabbitmq")]["spec"]["maxUnavailable"] == 1

    config = _yaml(K8S / "configmap.yaml")[0]["data"]
    assert int(config["DOSSIERFLOW_QUORUM_REPLICAS"]) == sts["replicas"]
    secrets = {d["metadata"]["name"]: d["stringData"] for d in _yaml(K8S / "secret.example.yaml")}
    for name in ("dispatcher-broker", "api-broker"):
        assert _hosts(secrets[name]["DOSSIERFLOW_AMQP_URL"]) == [(pod, 5672) for pod in pods]
    api = secrets["dispatcher-broker"]["DOSSIERFLOW_RABBITMQ_API"]
    assert _hosts(api) == [(pod, 15672) for pod in pods]
    worker = next(d for d in _yaml(K8S / "worker.yaml") if d["kind"] == "Secret")
    assert _hosts(worker["stringData"]["DOSSIERFLOW_AMQP_URL"]) == [(pod, 5672) for pod in pods]

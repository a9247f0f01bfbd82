"""The deployment files parse, run real `dossierflow` subcommands and keep offices apart."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dossierflow.parser import build_parser

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = ROOT / "deploy" / "compose"
RABBITMQ = ROOT / "deploy" / "rabbitmq"
YAML_FILES = sorted([*K8S.glob("*.yaml"), *COMPOSE.glob("*.yaml")])


def parser() -> argparse.ArgumentParser:
    """The full command line, as dossierflow.cli.main builds it."""
    return build_parser()


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc.get("spec", {})
    if doc.get("kind") == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    found: list[dict[str, Any]] = spec.get("template", {}).get("spec", {}).get("containers", [])
    return found


def k8s_argv(container: dict[str, Any]) -> list[str]:
    """The dossierflow argv of a container (the image's ENTRYPOINT is `dossierflow`)."""
    command = [str(a) for a in container.get("command", [])]
    if command:
        assert command[0] == "dossierflow", command
        command = command[1:]
    return command + [str(a) for a in container.get("args", [])]


def test_there_are_manifests() -> None:
    names = {p.name for p in K8S.glob("*.yaml")}
    assert {
        "namespace.yaml",
        "configmap.yaml",
        "secret.example.yaml",
        "dispatcher.yaml",
        "worker.yaml",
        "api.yaml",
        "mailer.yaml",
        "reminder-cronjob.yaml",
    } <= names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.name)
def test_yaml_parses(path: Path) -> None:
    assert documents(path)


def test_k8s_commands_are_real_subcommands() -> None:
    cli = parser()
    seen = []
    for path in K8S.glob("*.yaml"):
        for doc in documents(path):
            for container in containers(doc):
                argv = k8s_argv(container)
                assert container["image"] == "dossierflow:latest"
                cli.parse_args(argv)  # SystemExit on an unknown command or option
                seen.append(argv[0])
    assert sorted(set(seen)) == ["api", "dispatcher", "reminder", "worker"]


def test_compose_commands_are_real_subcommands() -> None:
    cli = parser()
    compose = documents(COMPOSE / "compose.yaml")[0]
    for service in compose["services"].values():
        if "command" in service and service.get("image", "").startswith("dossierflow"):
            cli.parse_args([str(a) for a in service["command"]])


def test_k8s_shape() -> None:
    by_name = {
        (doc["kind"], doc["metadata"]["name"]): doc
        for path in K8S.glob("*.yaml")
        for doc in documents(path)
    }
    dispatcher = by_name[("Deployment", "dispatcher")]["spec"]
    assert dispatcher["replicas"] == 2
    assert dispatcher["template"]["spec"]["terminationGracePeriodSeconds"] == 60
    worker = by_name[("Deployment", "worker-office1")]["spec"]
    assert worker["replicas"] == 3
    assert worker["template"]["spec"]["terminationGracePeriodSeconds"] >= 600
    # Workers have no database credentials: only their own Secret, which holds no Mongo URL.
    refs = worker["template"]["spec"]["containers"][0]["envFrom"]
    assert {"secretRef": {"name": "worker-office1"}} in refs
    assert {"secretRef": {"name": "dossierflow"}} not in refs
    secret = by_name[("Secret", "worker-office1")]["stringData"]
    assert not any("MONGO" in key for key in secret)
    api = by_name[("Deployment", "api")]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/openapi.json"
    cron = by_name[("CronJob", "reminder")]["spec"]
    assert cron["timeZone"] == "Europe/Brussels"
    assert cron["schedule"] == "0 6 * * *"
    assert cron["concurrencyPolicy"] == "Forbid"


def test_configmap_names_real_settings() -> None:
    from dataclasses import fields

    from dossierflow.settings import PREFIX, Settings

    known = {PREFIX + f.name.upper() for f in fields(Settings)}
    config = documents(K8S / "configmap.yaml")[0]["data"]
    assert set(config) <= known
    for doc in documents(K8S / "secret.example.yaml"):
        secrets = doc["stringData"]
        assert set(secrets) <= known
        Settings.from_env({k: str(v) for k, v in {**config, **secrets}.items()})


def test_each_process_has_its_own_broker_login() -> None:
    """The dispatcher and the API log in as themselves (service-user.sh), nobody as guest."""
    from urllib.parse import urlsplit

    from broker.addresses import split_urls

    secrets = {
        d["metadata"]["name"]: d["stringData"] for d in documents(K8S / "secret.example.yaml")
    }
    assert "DOSSIERFLOW_AMQP_URL" not in secrets["dossierflow"]  # mailer, reminder: no broker
    logins = {"dispatcher-broker": "dispatcher", "api-broker": "api"}
    for name, login in logins.items():
        urls = split_urls(secrets[name]["DOSSIERFLOW_AMQP_URL"])
        assert len(urls) == 3 and {urlsplit(u).username for u in urls} == {login}
    api_urls = split_urls(secrets["dispatcher-broker"]["DOSSIERFLOW_RABBITMQ_API"])
    assert {urlsplit(u).username for u in api_urls} == {"dispatcher"}
    assert "DOSSIERFLOW_RABBITMQ_API" not in secrets["api-broker"]
    by_name = {
        (doc["kind"], doc["metadata"]["name"]): doc
        for path in K8S.glob("*.yaml")
        for doc in documents(path)
    }
    for deployment, secret in (("dispatcher", "dispatcher-broker"), ("api", "api-broker")):
        pod = by_name[("Deployment", deployment)]["spec"]["template"]["spec"]
        refs = pod["containers"][0]["envFrom"]
        # After the shared Secret, so its URL is the one the process sees.
        assert refs[-1] == {"secretRef": {"name": secret}}
    config = documents(K8S / "configmap.yaml")[0]["data"]
    assert config["DOSSIERFLOW_COMMAND_PUBLISHERS"] == "api"
    for path in [*K8S.rglob("*.yaml"), *COMPOSE.glob("*.yaml"), RABBITMQ / "definitions.json"]:
        assert not re.search(r"//guest:|\bguest\b.*password", path.read_text()), path


def test_definitions() -> None:
    definitions = json.loads((RABBITMQ / "definitions.json").read_text())
    assert {"name": "dossierflow"} in definitions["vhosts"]
    (policy,) = definitions["policies"]
    assert policy["vhost"] == "dossierflow"
    assert policy["apply-to"] == "queues"
    assert "delivery-limit" in policy["definition"]
    assert re.match(policy["pattern"], "dossierflow.work.office1")
    assert not re.match(policy["pattern"], "dossierflow.control.p00")


def office_patterns(office: str) -> dict[str, str]:
    """The patterns office-user.sh sets, read from the script with $office substituted."""
    script = (RABBITMQ / "office-user.sh").read_text()
    found = {}
    for key in ("configure", "write", "read_", "topic_read", "topic_events"):
        (raw,) = re.findall(rf'^{key}="(.*)"$', script, re.MULTILINE)
        # bash double quotes: \\ -> \, \$ -> $
        found[key] = raw.replace("${office}", office).replace("\\\\", "\\").replace("\\$", "$")
    return found


def test_office_user_patterns_are_anchored() -> None:
    patterns = office_patterns("office1")
    for key, pattern in patterns.items():
        assert pattern.startswith("^"), pattern
        # A routing-key prefix needs no end anchor: `office1\.` ends at the separator.
        assert pattern.endswith("$" if key != "topic_events" else "\\."), pattern
    for key in ("configure", "read_"):
        pattern = patterns[key]
        assert re.match(pattern, "dossierflow.work.office1")
        for other in (
            "dossierflow.work.office10",
            "dossierflow.work.office2",
            "dossierflow.control.p00",
            "xdossierflow.work.office1",
        ):
            assert not re.match(pattern, other), (pattern, other)
    # Events only through the events exchange: no commands, timers or dead letters.
    assert re.match(patterns["write"], "dossierflow.events")
    for exchange in (
        "dossierflow.partitions", "dossierflow.control", "dossierflow.dead",
        "dossierflow.delay.10s", "dossierflow.retry.10s",
    ):  # fmt: skip
        assert not re.match(patterns["write"], exchange), exchange
    assert re.match(patterns["topic_events"], "office1.d1")
    for key in ("office10.d1", "office2.d1", "xoffice1.d1", "office1", "#"):
        assert not re.match(patterns["topic_events"], key), key
    assert not re.match(patterns["write"], "dossierflow.work")
    assert not re.match(patterns["write"], "dossierflow.work.office10")
    assert re.match(patterns["topic_read"], "office1.*")
    for key in ("#", "office10.*", "office2.*", "office1.#"):
        assert not re.match(patterns["topic_read"], key)


def service_patterns(role: str) -> dict[str, str]:
    """The permissions service-user.sh gives `role`, read from the script."""
    script = (RABBITMQ / "service-user.sh").read_text()
    (body,) = re.findall(rf"^{role}\)\n(.*?)\n    ;;$", script, re.MULTILINE | re.DOTALL)
    found = {}
    for key in ("configure", "write", "read_"):
        (raw,) = re.findall(rf"^    {key}=(.*)$", body, re.MULTILINE)
        ours = re.fullmatch(r"\$\(ours '(.*)'\)", raw)
        if ours:  # ours() in the script: `^dossierflow\.(PARTS)(\.[^.]+)?$`
            found[key] = rf"^dossierflow\.({ours.group(1)})(\.[^.]+)?$"
        else:
            found[key] = raw.strip("'")
    return found


def test_service_user_patterns() -> None:
    dispatcher, api = service_patterns("dispatcher"), service_patterns("api")
    names = [
        "dossierflow.partitions", "dossierflow.control", "dossierflow.control.p00",
        "dossierflow.control.parked", "dossierflow.work", "dossierflow.work.office1",
        "dossierflow.delay.10s", "dossierflow.retry.10s", "dossierflow.dead",
        "dossierflow.parked", "dossierflow.changes",
    ]  # fmt: skip
    for name in [*names, "dossierflow.events"]:
        assert re.match(dispatcher["configure"], name), name
    for name in names:
        assert re.match(dispatcher["write"], name), name
    # Only connectors publish events; nothing through the default exchange or elsewhere.
    for name in ("dossierflow.events", "amq.default", "other", "xdossierflow.control"):
        assert not re.match(dispatcher["write"], name), name
    assert re.match(dispatcher["read_"], "dossierflow.events")  # the binding's source
    # The API: commands to the partitions exchange and its own change-feed queue, nothing else.
    assert re.match(api["write"], "dossierflow.partitions")
    assert not re.match(api["write"], "dossierflow.control")
    assert re.match(api["read_"], "dossierflow.changes")
    for key in ("configure", "write", "read_"):
        assert re.match(api[key], "amq.gen-AbC_12")
        for name in [*names[2:], "dossierflow.events", "amq.default"]:
            if (key, name) != ("read_", "dossierflow.changes"):
                assert not re.match(api[key], name), (key, name)
    assert not re.match(api["configure"], "dossierflow.partitions")

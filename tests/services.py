"""Where the tests find RabbitMQ and the MongoDB-compatible server.

Order: the services named by DOSSIERFLOW_* environment variables (defaults: the local
services of `deploy/local/services.sh`); when those do not answer and a Docker engine
exists, testcontainers; otherwise the test fails saying how to start them.
"""

from __future__ import annotations

import os
import shutil
import socket
import urllib.parse
from dataclasses import dataclass

from broker.addresses import split_urls
from dossierflow.settings import Settings

HOW_TO_START = (
    "start them with `bash deploy/local/services.sh start` (or run `make test`, which does), "
    "or point DOSSIERFLOW_AMQP_URL, DOSSIERFLOW_RABBITMQ_API and DOSSIERFLOW_MONGO_URL at yours"
)


@dataclass(frozen=True)
class Endpoints:
    """URLs of the services the tests use."""

    amqp_url: str
    rabbitmq_api: str
    mongo_url: str


def _answers(url: str, default_port: int) -> bool:
    """Whether the service (any node of those a URL list names) accepts a connection."""
    for one in split_urls(url):
        parts = urllib.parse.urlsplit(one)
        try:
            with socket.create_connection(
                (parts.hostname or "127.0.0.1", parts.port or default_port), 2
            ):
                return True
        except OSError:
            continue
    return False


def _from_containers() -> Endpoints:  # pragma: no cover - needs a Docker engine
    from testcontainers.core.container import DockerContainer
    from testcontainers.mongodb import MongoDbContainer

    rabbit = (
        DockerContainer("rabbitmq:3.13-management")
        .with_exposed_ports(5672, 15672)
        .with_command(
            "bash -c 'rabbitmq-plugins enable --offline rabbitmq_consistent_hash_exchange "
            "&& exec docker-entrypoint.sh rabbitmq-server'"
        )
    )
    rabbit.start()
    mongo = MongoDbContainer("mongo:7")
    mongo.start()
    host = rabbit.get_container_host_ip()
    return Endpoints(
        amqp_url=f"amqp://guest:guest@{host}:{rabbit.get_exposed_port(5672)}/%2F",
        rabbitmq_api=f"http://guest:guest@{host}:{rabbit.get_exposed_port(15672)}/api",
        mongo_url=mongo.get_connection_url(),
    )


def endpoints() -> Endpoints:
    """The services to test against, or an AssertionError saying how to start them."""
    settings = Settings.from_env()
    found = Endpoints(settings.amqp_url, settings.rabbitmq_api, settings.mongo_url)
    missing = [
        name
        for name, url, port in (
            ("RabbitMQ", found.amqp_url, 5672),
            ("RabbitMQ management API", found.rabbitmq_api, 15672),
            ("MongoDB-compatible server", found.mongo_url, 27017),
        )
        if not _answers(url, port)
    ]
    if not missing:
        return found
    if shutil.which("docker") and os.environ.get("DOSSIERFLOW_TESTCONTAINERS", "1") == "1":
        try:
            return _from_containers()
        except Exception as exc:
            raise AssertionError(
                f"{', '.join(missing)} not reachable and testcontainers failed ({exc}); "
                + HOW_TO_START
            ) from exc
    raise AssertionError(f"{', '.join(missing)} not reachable: " + HOW_TO_START)

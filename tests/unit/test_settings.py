"""Settings come from DOSSIERFLOW_* variables, with defaults for the local services."""

from __future__ import annotations

from pathlib import Path

import pytest

from dossierflow.settings import Settings, SettingsError


def test_defaults_point_at_local_services() -> None:
    settings = Settings.from_env({})
    assert settings.amqp_url.startswith("amqp://guest:guest@127.0.0.1:5672/")
    assert settings.mongo_url == "mongodb://127.0.0.1:27017/"


def test_variables_override_with_their_types() -> None:
    settings = Settings.from_env(
        {
            "DOSSIERFLOW_PARTITIONS": "16",
            "DOSSIERFLOW_SWEEP_GRACE_S": "2.5",
            "DOSSIERFLOW_SIMPACKAGE_PATH": "/tmp/x.sqlite3",
            "OTHER_PARTITIONS": "3",
        }
    )
    assert settings.partitions == 16
    assert settings.sweep_grace_s == 2.5
    assert settings.simpackage_path == Path("/tmp/x.sqlite3")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DOSSIERFLOW_PARTITIONS", "many"),
        ("DOSSIERFLOW_PARTITIONS", "0"),
        ("DOSSIERFLOW_HEARTBEAT_S", "-1"),
        ("DOSSIERFLOW_LOG_FORMAT", "xml"),
        ("DOSSIERFLOW_LOCAL_MODE", "maybe"),
        ("DOSSIERFLOW_COOKIE_SECURE", "yes please"),
        ("DOSSIERFLOW_CSRF_SECRET", "too-short"),
        ("DOSSIERFLOW_SESSION_IDLE_S", "0"),
        ("DOSSIERFLOW_LOGIN_FAILURES", "0"),
        ("DOSSIERFLOW_SUBMIT_RATE", "0"),
        ("DOSSIERFLOW_SUBMIT_BURST", "0"),
        ("DOSSIERFLOW_OFFICE_WAITING_CAP", "-5"),
    ],
)
def test_a_bad_value_is_a_clear_error(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_the_local_mode_is_services_on_this_machine_unless_set() -> None:
    assert Settings().local and not Settings().secure_cookie
    remote = {
        "DOSSIERFLOW_AMQP_URL": "amqps://u:p@127.0.0.1:5671/,amqps://u:p@rabbit-2:5671/",
        "DOSSIERFLOW_CSRF_SECRET": "k" * 32,
    }
    assert not Settings.from_env(remote).local and Settings.from_env(remote).secure_cookie
    forced = Settings.from_env({**remote, "DOSSIERFLOW_LOCAL_MODE": "on"})
    assert forced.local and not forced.secure_cookie
    tls_here = Settings.from_env({"DOSSIERFLOW_LOCAL_MODE": "off"})
    assert not tls_here.local and tls_here.secure_cookie
    plain = Settings.from_env({**remote, "DOSSIERFLOW_COOKIE_SECURE": "off"})
    assert not plain.local and not plain.secure_cookie


REMOTE_SAFE = {
    "DOSSIERFLOW_AMQP_URL": "amqps://dispatcher:pw@rabbit-1:5671/df,amqps://dispatcher:pw@rabbit-2:5671/df",
    "DOSSIERFLOW_RABBITMQ_API": "https://dispatcher:pw@rabbit-1:15671/api",
    "DOSSIERFLOW_MONGO_URL": "mongodb://df:pw@mongo-0:27017/?tls=true&replicaSet=rs0",
    "DOSSIERFLOW_SMTP_HOST": "smtp.example.be",
    "DOSSIERFLOW_SMTP_USER": "df",
    "DOSSIERFLOW_SMTP_SECURITY": "starttls",
}


@pytest.mark.parametrize(
    ("change", "refused"),
    [
        ({"DOSSIERFLOW_AMQP_URL": "amqps://guest:guest@rabbit-1:5671/"}, "AMQP_URL logs in as"),
        ({"DOSSIERFLOW_RABBITMQ_API": "https://guest:guest@rabbit-1/api"}, "API logs in as"),
        ({"DOSSIERFLOW_AMQP_URL": "amqp://u:p@rabbit-1:5672/"}, "AMQP_URL is not encrypted"),
        ({"DOSSIERFLOW_RABBITMQ_API": "http://u:p@rabbit-1/api"}, "RABBITMQ_API is not encrypted"),
        ({"DOSSIERFLOW_MONGO_URL": "mongodb://df:pw@mongo-0:27017/"}, "MONGO_URL is not encrypted"),
        ({"DOSSIERFLOW_MONGO_URL": "mongodb://mongo-0:27017/?tls=true"}, "MONGO_URL names no user"),
        ({"DOSSIERFLOW_SMTP_SECURITY": "none"}, "SMTP_SECURITY=none"),
    ],
)  # fmt: skip
def test_outside_the_local_mode_unsafe_services_are_refused(
    change: dict[str, str], refused: str
) -> None:
    Settings.from_env(REMOTE_SAFE)  # the safe settings pass
    with pytest.raises(SettingsError, match=refused):
        Settings.from_env({**REMOTE_SAFE, **change})
    Settings.from_env({**REMOTE_SAFE, **change, "DOSSIERFLOW_LOCAL_MODE": "on"})


def test_plaintext_to_another_machine_passes_only_when_allowed() -> None:
    plain = {
        **REMOTE_SAFE,
        "DOSSIERFLOW_AMQP_URL": "amqp://u:p@rabbit-1:5672/",
        "DOSSIERFLOW_RABBITMQ_API": "http://u:p@rabbit-1:15672/api",
        "DOSSIERFLOW_MONGO_URL": "mongodb://df:pw@mongo-0:27017/",
    }
    assert not Settings.from_env({**plain, "DOSSIERFLOW_ALLOW_PLAINTEXT": "on"}).local
    x509 = "mongodb+srv://mongo.example/?authMechanism=MONGODB-X509"
    Settings.from_env({**REMOTE_SAFE, "DOSSIERFLOW_MONGO_URL": x509})
    # a default (loopback) URL a process does not use is not held against it
    worker = {"DOSSIERFLOW_AMQP_URL": "amqps://connector-o1:pw@rabbit-1:5671/df"}
    assert not Settings.from_env(worker).local

"""Settings come from DOSSIERFLOW_* variables, with defaults for the local services."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.settings import Settings, SettingsError


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
    ],
)
def test_a_bad_value_is_a_clear_error(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})


def test_the_local_mode_is_services_on_this_machine_unless_set() -> None:
    assert Settings().local and not Settings().secure_cookie
    remote = {"DOSSIERFLOW_AMQP_URL": "amqp://u:p@127.0.0.1:5672/,amqp://u:p@rabbit-2:5672/"}
    assert not Settings.from_env(remote).local and Settings.from_env(remote).secure_cookie
    forced = Settings.from_env({**remote, "DOSSIERFLOW_LOCAL_MODE": "on"})
    assert forced.local and not forced.secure_cookie
    tls_here = Settings.from_env({"DOSSIERFLOW_LOCAL_MODE": "off"})
    assert not tls_here.local and tls_here.secure_cookie
    plain = Settings.from_env({**remote, "DOSSIERFLOW_COOKIE_SECURE": "off"})
    assert not plain.local and not plain.secure_cookie

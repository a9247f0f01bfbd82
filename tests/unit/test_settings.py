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
    ],
)
def test_a_bad_value_is_a_clear_error(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({name: value})

"""The byte bounds of the settings: the largest message, the prefetch it allows, validation."""

from __future__ import annotations

import pytest

from broker.topology import PARTITION_MAX_BYTES, partition_arguments
from dossierflow.settings import Settings, SettingsError

MIB = 1024 * 1024


def test_the_prefetch_fits_every_partition_of_largest_messages_in_the_budget() -> None:
    settings = Settings()
    assert settings.message_limit_bytes == 256 * 1024 + 16 * 1024
    # 128 MiB over 8 partitions of 272 KiB messages: 60 each, not the 512 of the setting.
    assert settings.partition_prefetch == 60
    assert settings.partition_prefetch * 8 * settings.message_limit_bytes <= 128 * MIB
    small = Settings.from_env({"DOSSIERFLOW_PAYLOAD_LIMIT_BYTES": "1024"})
    assert small.partition_prefetch == 512  # the message count bounds first


def test_budgets_too_small_for_one_largest_message_are_refused() -> None:
    with pytest.raises(SettingsError, match="SEQUENCER_PREFETCH_BYTES"):
        Settings.from_env({"DOSSIERFLOW_SEQUENCER_PREFETCH_BYTES": str(MIB)})
    with pytest.raises(SettingsError, match="PARTITION_MAX_BYTES"):
        Settings.from_env({"DOSSIERFLOW_PARTITION_MAX_BYTES": "1000"})
    with pytest.raises(SettingsError, match="PAYLOAD_LIMIT_BYTES"):
        Settings.from_env({"DOSSIERFLOW_PAYLOAD_LIMIT_BYTES": "0"})


def test_partitions_refuse_publishes_past_their_byte_limit() -> None:
    args = partition_arguments()
    assert args["x-max-length-bytes"] == PARTITION_MAX_BYTES
    assert args["x-overflow"] == "reject-publish"
    settings = Settings.from_env({"DOSSIERFLOW_PARTITION_MAX_BYTES": str(8 * MIB)})
    assert settings.topology().partition_max_bytes == 8 * MIB

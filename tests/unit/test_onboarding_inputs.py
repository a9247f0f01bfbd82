"""What the onboarding commands accept as time zones, addresses and ids (no services)."""

from __future__ import annotations

import pytest

from dossierflow.commands.onboarding import Refused, _check_email, _check_id, _check_zone


@pytest.mark.parametrize("zone", ["Europe/Brussels", "Europe/Amsterdam", "UTC"])
def test_an_iana_time_zone_is_accepted(zone: str) -> None:
    assert _check_zone(zone) == zone


@pytest.mark.parametrize("zone", ["Europe/Brusels", "CET+1", "../etc/passwd", "", "/UTC"])
def test_an_unknown_time_zone_is_bad_input_naming_it(zone: str) -> None:
    with pytest.raises(Refused, match="unknown time zone") as refused:
        _check_zone(zone)
    assert refused.value.code == 2


@pytest.mark.parametrize("address", ["ops@kbrugge.be", "a.b+c@x.example", ""])
def test_one_plain_address_or_none_is_accepted(address: str) -> None:
    assert _check_email(address) == address


@pytest.mark.parametrize(
    "address", ["ops", "ops@kbrugge", "a@b.be, c@d.be", "Ops <ops@kb.be>", "a@b.be\r\nBcc: x@y.z"]
)
def test_anything_else_is_refused_as_an_address(address: str) -> None:
    with pytest.raises(Refused, match="not one plain e-mail address"):
        _check_email(address)


@pytest.mark.parametrize("value", ["office 1", "office.1", "", "x" * 65, "kantoor/brugge"])
def test_an_id_outside_routing_key_characters_is_refused(value: str) -> None:
    with pytest.raises(Refused, match="bad office id"):
        _check_id("office", value)

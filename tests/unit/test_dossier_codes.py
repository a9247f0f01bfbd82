"""A payload's dossier code is its own dossier's (dispatcher.codes, pure)."""

from __future__ import annotations

from dispatcher.codes import foreign_code, payload_code

HOLDERS = {
    "C1": {("office1", "d0001")},
    "C2": {("office1", "d0002")},
    "C9": {("office2", "e1")},
    "SHARED": {("office1", "d0001"), ("office1", "d0002")},
}


def test_another_dossiers_code_of_the_office_is_refused() -> None:
    why = foreign_code("office1", "d0001", {"dossier_code": "C2"}, HOLDERS)
    assert why is not None and "belongs to another dossier" in why and "d0002" not in why
    assert foreign_code("office1", "d0003", {"dossier_code": "C1"}, HOLDERS) is not None


def test_its_own_code_an_unknown_one_and_other_offices_codes_pass() -> None:
    for dossier, code in (("d0001", "C1"), ("d0001", "NEW"), ("d0001", "C9"), ("d0002", "SHARED")):
        assert foreign_code("office1", dossier, {"dossier_code": code}, HOLDERS) is None


def test_a_payload_without_a_code_has_nothing_to_check() -> None:
    for payload in (None, {}, {"dossier_code": ""}, {"dossier_code": 7}, {"other": "C2"}):
        assert payload_code(payload) is None
        assert foreign_code("office1", "d0001", payload, HOLDERS) is None

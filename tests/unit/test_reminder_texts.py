"""The instruction text catalogue: every code in every language, filled with its facts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from workers.texts import LANGUAGES, instruction_text, kind_label, known_codes, language_of
from workers.vocabulary import ErrorCode

FACTS = {
    ErrorCode.INVALID_PERIOD: {"period": "2024-13"},
    ErrorCode.INVALID_JOURNAL: {"journal": "VKP9"},
    ErrorCode.INVALID_VAT_CODE: {"vat_code": "BTW77"},
    ErrorCode.DUPLICATE_BOOKING: {"proposal_id": "prop-4711"},
    ErrorCode.UNKNOWN_DOSSIER_CODE: {"dossier_code": "DC-0042"},
    ErrorCode.PACKAGE_UNREACHABLE: {"error": "PackageTimeout"},
    ErrorCode.DATABASE_ERROR: {"dossier_code": "DC-0666"},
    ErrorCode.UNKNOWN_ERROR: {},
    ErrorCode.UNREADABLE_MESSAGE: {"error": "InvalidPayload"},
}


def test_the_catalogue_has_every_error_code() -> None:
    assert set(known_codes()) == {code.value for code in ErrorCode}
    assert set(FACTS) == set(ErrorCode)


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_code_renders_in_every_language_with_its_facts(
    code: ErrorCode, language: str
) -> None:
    text = instruction_text(code.value, FACTS[code], language)
    assert text.title and text.action
    for value in FACTS[code].values():
        assert value in text.action
    assert "{" not in text.action and "}" not in text.action


def test_the_languages_differ_and_say_what_to_do() -> None:
    facts = {"period": "2024-13"}
    nl = instruction_text("invalid_period", facts, "nl")
    fr = instruction_text("invalid_period", facts, "fr")
    en = instruction_text("invalid_period", facts, "en")
    assert en.action == (
        "Period 2024-13 is closed or does not exist in the accounting package. Open the "
        "period or correct the booking proposal, then restart the task."
    )
    assert "Periode 2024-13 is afgesloten" in nl.action and "herstart" in nl.action
    assert "La période 2024-13 est clôturée" in fr.action and "relancez" in fr.action


@pytest.mark.parametrize(
    ("language", "placeholder"), [("nl", "(onbekend)"), ("fr", "(inconnu)"), ("en", "(unknown)")]
)
def test_a_missing_fact_renders_as_a_placeholder(language: str, placeholder: str) -> None:
    assert placeholder in instruction_text("invalid_journal", {}, language).action
    assert placeholder in instruction_text("invalid_journal", {"journal": ""}, language).action


@pytest.mark.parametrize("language", ["de", "", "NL-be", "xx"])
def test_an_unknown_language_falls_back_to_dutch_except_known_prefixes(language: str) -> None:
    expected = "nl" if language_of(language) == "nl" else language_of(language)
    assert instruction_text("invalid_period", {"period": "1"}, language) == instruction_text(
        "invalid_period", {"period": "1"}, expected
    )
    assert language_of("de") == "nl"
    assert language_of("FR") == "fr"


def test_an_unknown_code_gets_a_generic_text_naming_the_code() -> None:
    text = instruction_text("brand_new_error", {"x": "y"}, "en")
    assert text.title == "Action required"
    assert "brand_new_error" in text.action


def test_kind_labels_are_translated_and_unknown_kinds_shown_as_is() -> None:
    assert kind_label("dossier.activate", "nl") == "Klant/Dossier activeren"
    assert kind_label("dossier.sync", "fr") == "Synchroniser le dossier"
    assert kind_label("some.kind", "en") == "some.kind"


@given(
    code=st.sampled_from([c.value for c in ErrorCode] + ["other"]),
    facts=st.dictionaries(st.text(max_size=12), st.text(max_size=30), max_size=4),
    language=st.text(max_size=5),
)
def test_rendering_never_fails_whatever_the_facts(
    code: str, facts: dict[str, str], language: str
) -> None:
    text = instruction_text(code, facts, language)
    assert text.title and text.action

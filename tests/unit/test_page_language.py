"""The page's catalogs are complete and compiled; language and time follow the person."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from babel.dates import format_timedelta
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from hypothesis import given, settings
from hypothesis import strategies as st

from dispatcher.api.i18n import LOCALE_DIR, Speaker, accepted, choose_language
from workers.texts import LANGUAGES, instruction_text

API_DIR = Path(__file__).parents[2] / "dispatcher" / "api"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def _extracted() -> set[str]:
    """Every message of the page's code and templates, as `make messages` extracts them."""
    method_map = [("**.py", "python"), ("templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(API_DIR), method_map, keywords=keywords
    ):
        found.add(message[0] if isinstance(message, tuple) else message)
    return found


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_message_of_the_page_has_a_translation(language: str) -> None:
    po = LOCALE_DIR / language / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as f:
        catalog = read_po(f, locale=language)
    translated = {}
    for m in catalog:
        key = m.id[0] if isinstance(m.id, tuple) else m.id
        strings = m.string if isinstance(m.string, tuple) else (m.string,)
        if key and all(strings) and not m.fuzzy:
            translated[key] = strings
    missing = sorted(_extracted() - set(translated))
    assert not missing, f"{language}: no translation for {missing} (run make messages)"
    for key, strings in translated.items():
        for text in strings:
            assert set(PLACEHOLDER.findall(text)) <= set(PLACEHOLDER.findall(key)) | {"num"}, key


def _key(value: object) -> object:
    return tuple(value) if isinstance(value, list | tuple) else value


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_compiled_catalogs_match_their_sources(language: str) -> None:
    folder = LOCALE_DIR / language / "LC_MESSAGES"
    with (folder / "messages.po").open("rb") as f:
        source = {_key(m.id): _key(m.string) for m in read_po(f, locale=language) if m.id}
    with (folder / "messages.mo").open("rb") as f:
        compiled = {_key(m.id): _key(m.string) for m in read_mo(f) if m.id}
    assert compiled == source, f"{language}: run make catalogs"


def test_the_page_speaks_dutch_and_french_with_the_mails_instruction_texts() -> None:
    nl, fr = Speaker.of("nl", "Europe/Brussels"), Speaker.of("fr", "Europe/Brussels")
    assert nl.gettext("Restart") == "Herstarten"
    assert fr.gettext("Restart") == "Relancer"
    assert nl.status("failed") == "gefaald"
    assert fr.status("cancelled") == "annulée"
    assert nl.kind("dossier.activate") == "Klant/Dossier activeren"
    facts = {"dossier_code": "TYPO"}
    expected = instruction_text("unknown_dossier_code", facts, "fr")
    assert fr.instruction("unknown_dossier_code", facts) == expected
    assert fr.ngettext("%(num)s dossier", "%(num)s dossiers", 3) == "3 dossiers"


@pytest.mark.parametrize(
    ("user", "header", "office", "chosen"),
    [
        ("fr", "nl-BE,nl;q=0.9", "nl", "fr"),  # the user's setting first
        ("", "fr-BE,fr;q=0.9,en;q=0.8", "nl", "fr"),  # then the browser
        ("", "de-DE,de;q=0.9,en;q=0.5,fr;q=0.7", "nl", "fr"),  # its best supported one
        ("", "de-DE", "fr", "fr"),  # then the office
        ("", None, "", "nl"),  # then the product's language
        ("xx", "en;q=0", "en", "en"),  # an unknown setting and a refused language count not
    ],
)
def test_the_language_is_the_users_then_the_browsers_then_the_offices(
    user: str, header: str | None, office: str, chosen: str
) -> None:
    assert choose_language(user, header, office) == chosen


def test_an_absurd_accept_language_is_harmless() -> None:
    assert accepted("fr;q=abc, nl;q=0.5" + ",x" * 10_000) == ["nl"]


def test_times_are_the_offices_local_time_in_the_locales_format() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    at = datetime(2026, 11, 27, 9, 30, tzinfo=UTC)  # 10:30 in Brussels (CET)
    nl = Speaker.of("nl", "Europe/Brussels", now)
    fr = Speaker.of("fr", "Europe/Brussels", now)
    en = Speaker.of("en", "Europe/Brussels", now)
    assert nl.when(at) == "27-11-2026, 10:30"
    assert fr.when(at) == "27/11/2026 10:30"
    assert "10:30" in en.when(at)
    assert nl.ago(at) == "5 dagen geleden"
    assert fr.ago(at) == "il y a 5 jours"
    assert en.ago(at) == "5 days ago"
    summer = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)  # 11:30 in Brussels (CEST)
    assert nl.when(summer).endswith("11:30")
    assert Speaker.of("nl", "Not/AZone", now).when(at).endswith("10:30")


@given(
    st.sampled_from(sorted(LANGUAGES)),
    st.one_of(
        st.floats(-4e8, 4e8, allow_nan=False),
        st.sampled_from([0.0, -0.0, 0.3, -0.3, 59.5, 89.9, 6.6 * 86400, -6.6 * 86400]),
    ),
)
@settings(max_examples=300)
def test_relative_times_read_as_babel_writes_them_though_they_are_cached(
    language: str, seconds: float
) -> None:
    """Cached per unit, count and direction: the words are Babel's for every delta."""
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    speaker = Speaker(language, UTC, now)
    at = now + timedelta(seconds=seconds)
    expected = format_timedelta(
        at - now, threshold=1.0, add_direction=True, format="long", locale=language
    )
    assert speaker.ago(at) == expected
    assert speaker.ago(at) == expected  # from the cache

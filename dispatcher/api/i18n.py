"""The page's language and time: gettext catalogs (Babel), the office's zone, locale formats.

The language is the user's setting, else the browser's Accept-Language, else the
office's. Instruction texts and kind names come from `workers.texts`, so the page says
exactly what the mails say; everything else comes from the catalogs in `locale/`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.core import Locale
from babel.dates import format_datetime, format_timedelta
from babel.support import NullTranslations, Translations

from workers.texts import LANGUAGES, InstructionText, instruction_text, kind_label
from workers.vocabulary import TaskStatus

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
FALLBACK_LANGUAGE = "nl"  # the product's primary language, as in the mails
FALLBACK_ZONE = "Europe/Brussels"
_MAX_HEADER = 500  # an Accept-Language longer than this is not a browser's


def N_(message: str) -> str:
    """Mark a message for extraction; it is translated where it is shown."""
    return message


STATUS_LABELS: dict[TaskStatus, str] = {
    TaskStatus.SUBMITTED: N_("submitted"),
    TaskStatus.WAITING: N_("waiting"),
    TaskStatus.QUEUED: N_("queued"),
    TaskStatus.RUNNING: N_("running"),
    TaskStatus.RETRY_WAIT: N_("waiting to retry"),
    TaskStatus.DONE: N_("done"),
    TaskStatus.FAILED: N_("failed"),
    TaskStatus.CANCELLED: N_("cancelled"),
    TaskStatus.SKIPPED: N_("skipped"),
}


@functools.cache
def _locale(language: str) -> Locale:
    """Babel's locale data of a language, parsed once (formatting a date parses it anew)."""
    return Locale.parse(language)


@functools.cache
def translations(language: str) -> NullTranslations:
    """The compiled catalog of a language (English msgids when there is none)."""
    return Translations.load(str(LOCALE_DIR), [language], DOMAIN)


def accepted(header: str | None) -> list[str]:
    """Supported languages of an Accept-Language header, most wanted first."""
    ranked: list[tuple[float, int, str]] = []
    for n, part in enumerate((header or "")[:_MAX_HEADER].split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                quality = 0.0
        lang = tag.strip().lower()[:2]
        if lang in LANGUAGES and quality > 0:
            ranked.append((-quality, n, lang))
    return list(dict.fromkeys(lang for _, _, lang in sorted(ranked)))


def choose_language(user: str | None, header: str | None, office: str | None) -> str:
    """The user's setting, else the browser's first supported language, else the office's."""
    if user and user.lower() in LANGUAGES:
        return user.lower()
    browser = accepted(header)
    if browser:
        return browser[0]
    return office.lower() if office and office.lower() in LANGUAGES else FALLBACK_LANGUAGE


def zone(name: str | None) -> tzinfo:
    """The office's time zone; Brussels for a missing or unknown name."""
    try:
        return ZoneInfo(name or FALLBACK_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(FALLBACK_ZONE)


@dataclass(frozen=True)
class Speaker:
    """Everything a template needs to speak one language in one time zone."""

    language: str
    tz: tzinfo
    now: datetime

    @classmethod
    def of(cls, language: str, zone_name: str | None, now: datetime | None = None) -> Speaker:
        """A speaker for a language and an office's zone, at `now`."""
        return cls(language, zone(zone_name), now or datetime.now(UTC))

    def gettext(self, message: str, **values: Any) -> str:
        """A translated message, filled with `%(name)s` values."""
        text = translations(self.language).gettext(message)
        return text % values if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: Any) -> str:
        """A translated message in the form for `n` (its `%(num)s` is `n`)."""
        text = translations(self.language).ngettext(singular, plural, n)
        return text % {"num": n, **values}

    def status(self, status: str) -> str:
        """A task status in words."""
        try:
            return self.gettext(STATUS_LABELS[TaskStatus(status)])
        except ValueError:
            return status

    def kind(self, kind: str) -> str:
        """A task kind as the mails name it."""
        return kind_label(kind, self.language)

    def instruction(self, code: str, facts: dict[str, str]) -> InstructionText:
        """An instruction's title and action, as the mails write them."""
        return instruction_text(code, facts, self.language)

    def when(self, at: datetime | None, *, seconds: bool = False) -> str:
        """An absolute moment in the office's zone and the locale's format."""
        if at is None:
            return ""
        return _when(_aware(at), "medium" if seconds else "short", self.tz, self.language)

    def ago(self, at: datetime | None) -> str:
        """How long ago (or from now) a moment is, in words: '5 days ago'."""
        if at is None:
            return ""
        return _ago((_aware(at) - self.now).total_seconds(), self.language)

    def iso(self, at: datetime | None) -> str:
        """A moment for machines (the `datetime` attribute of `<time>`), in UTC."""
        return _aware(at).isoformat(timespec="seconds") if at else ""


# A list's rows are rendered again at every refresh of its live part: the same moments,
# formatted once (Babel's formatting is most of a page's rendering time otherwise).
@functools.lru_cache(maxsize=20_000)
def _when(at: datetime, pattern: str, tz: tzinfo, language: str) -> str:
    return format_datetime(at, pattern, tzinfo=tz, locale=_locale(language))


# Babel's units for relative times, largest first (`babel.dates.TIMEDELTA_UNITS`).
_UNITS = (31536000, 2592000, 604800, 86400, 3600, 60, 1)
_AGO: dict[tuple[int, int, bool, str], str] = {}


def _ago_key(seconds: float) -> tuple[int, int, bool]:
    """What Babel's relative time (threshold 1) depends on: unit, count and direction.

    The same choice `format_timedelta` makes, so its words can be kept per (unit, count,
    direction) instead of per second.
    """
    for size in _UNITS:
        count = abs(seconds) / size
        if count >= 1.0 or size == 1:
            if size == 1 and count > 0:
                count = max(1.0, count)
            return size, round(count), seconds >= 0
    raise AssertionError("unreachable: the loop returns at the second")


def _ago(seconds: float, language: str) -> str:
    key = (*_ago_key(seconds), language)
    text = _AGO.get(key)
    if text is None:
        text = format_timedelta(
            timedelta(seconds=seconds),
            threshold=1.0,
            add_direction=True,
            format="long",
            locale=_locale(language),
        )
        if len(_AGO) < 5_000:
            _AGO[key] = text
    return text


def _aware(at: datetime) -> datetime:
    """The store gives naive UTC datetimes; Babel needs to know they are UTC."""
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)

"""The fixed sentences of the mails in nl, fr and en (instruction texts are in texts.py).

Sentences are `str.format` patterns filled in Python with plain values; templates then
escape the finished sentence as a whole, so no value can bring markup into the HTML part.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime

from workers.texts import language_of

_NL: Mapping[str, str] = {
    "instruction_subject": "Actie nodig in dossier {dossier}: {title}",
    "greeting": "Beste,",
    "instruction_intro": (
        'De taak "{kind}" van dossier {dossier} ({office}) is mislukt op {when}. '
        "Het dossier is geblokkeerd tot de taak opnieuw kan lopen."
    ),
    "what_to_do": "Wat moet je doen?",
    "open_dossier": "Open de monitoring van het dossier",
    "instruction_why": (
        "Je krijgt deze e-mail omdat je dit dossier beheert of beheerder bent van het kantoor."
    ),
    "digest_subject": "Herinnering: openstaande accountant-instructies ({count} {dossiers})",
    "digest_intro": (
        "Voor de volgende dossiers staat minstens één accountant-instructie al {days} dagen "
        "of langer open. Zolang ze openstaat, blijft het dossier geblokkeerd."
    ),
    "digest_dossier": "Dossier {dossier}: oudste instructie van {oldest} ({age} dagen)",
    "digest_item": "{created} · {kind}: {title}",
    "digest_why": (
        "Je krijgt deze herinnering om de twee weken op maandag zolang er iets openstaat."
    ),
    "automatic": "Deze e-mail werd automatisch verstuurd door dossierflow.",
    "dossier_one": "dossier",
    "dossier_many": "dossiers",
    "colon": ": ",
}

_FR: Mapping[str, str] = {
    "instruction_subject": "Action requise pour le dossier {dossier} : {title}",
    "greeting": "Bonjour,",
    "instruction_intro": (
        "La tâche « {kind} » du dossier {dossier} ({office}) a échoué le {when}. "
        "Le dossier est bloqué jusqu'à ce que la tâche puisse être relancée."
    ),
    "what_to_do": "Que devez-vous faire ?",
    "open_dossier": "Ouvrir le monitoring du dossier",
    "instruction_why": (
        "Vous recevez cet e-mail parce que vous gérez ce dossier ou administrez le cabinet."
    ),
    "digest_subject": "Rappel : instructions comptables en attente ({count} {dossiers})",
    "digest_intro": (
        "Les dossiers suivants ont au moins une instruction comptable ouverte depuis {days} "
        "jours ou plus. Tant qu'elle reste ouverte, le dossier reste bloqué."
    ),
    "digest_dossier": "Dossier {dossier} : instruction la plus ancienne du {oldest} ({age} jours)",
    "digest_item": "{created} · {kind} : {title}",
    "digest_why": (
        "Vous recevez ce rappel un lundi sur deux tant qu'une instruction reste ouverte."
    ),
    "automatic": "Cet e-mail a été envoyé automatiquement par dossierflow.",
    "dossier_one": "dossier",
    "dossier_many": "dossiers",
    "colon": " : ",  # French typography: a space before the colon
}

_EN: Mapping[str, str] = {
    "instruction_subject": "Action needed in dossier {dossier}: {title}",
    "greeting": "Hello,",
    "instruction_intro": (
        'The task "{kind}" of dossier {dossier} ({office}) failed on {when}. '
        "The dossier is blocked until the task can run again."
    ),
    "what_to_do": "What to do",
    "open_dossier": "Open the dossier's monitoring",
    "instruction_why": (
        "You receive this e-mail because you manage this dossier or administer the office."
    ),
    "digest_subject": "Reminder: open accountant instructions ({count} {dossiers})",
    "digest_intro": (
        "The following dossiers have at least one accountant instruction that has been open "
        "for {days} days or more. The dossier stays blocked until it is dealt with."
    ),
    "digest_dossier": "Dossier {dossier}: oldest instruction from {oldest} ({age} days)",
    "digest_item": "{created} · {kind}: {title}",
    "digest_why": "You receive this reminder every other Monday while something is still open.",
    "automatic": "This e-mail was sent automatically by dossierflow.",
    "dossier_one": "dossier",
    "dossier_many": "dossiers",
    "colon": ": ",
}

# Support always reads English: one team, one language for its tickets.
SUPPORT: Mapping[str, str] = {
    "subject": "[dossierflow] Red instruction {code} in {office}/{dossier}",
    "intro": (
        'The task "{kind}" of dossier {dossier} in office {office} failed on {when} with an '
        "error only support can fix. The dossier is blocked."
    ),
    "ids": "Instruction {instruction} · task {task} · code {code}",
    "facts": "Facts",
    "open_dossier": "Open the dossier's monitoring",
    "automatic": "This e-mail was sent automatically by dossierflow.",
}

_WORDS: Mapping[str, Mapping[str, str]] = {"nl": _NL, "fr": _FR, "en": _EN}


def words(language: str) -> Mapping[str, str]:
    """The sentences of a language (nl for an unknown one)."""
    return _WORDS[language_of(language)]


def format_date(day: date, language: str) -> str:
    """A date as people of that language write it."""
    return day.isoformat() if language_of(language) == "en" else day.strftime("%d/%m/%Y")


def format_moment(at: datetime, language: str) -> str:
    """A local date and time as people of that language write it."""
    return f"{format_date(at.date(), language)} {at.strftime('%H:%M')}"

"""Instruction texts in nl, fr and en: what went wrong and what a person must do.

One catalogue for mails, the CLI and the API, so every channel says the same thing.
Texts are filled with the instruction's facts (period, journal, ...); a missing fact is
shown as a placeholder and an unknown code gets a generic text, so rendering never fails.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workers.vocabulary import ErrorCode

LANGUAGES = ("nl", "fr", "en")
DEFAULT_LANGUAGE = "nl"  # the product's primary language


@dataclass(frozen=True)
class InstructionText:
    """A rendered instruction: a short title and the action a person must take."""

    title: str
    action: str


_E = ErrorCode
# code -> language -> (title, action); placeholders name the facts each error carries.
_CATALOGUE: Mapping[str, Mapping[str, tuple[str, str]]] = {
    _E.INVALID_PERIOD: {
        "nl": (
            "Periode afgesloten of onbekend",
            "Periode {period} is afgesloten of bestaat niet in het boekhoudpakket. Open de "
            "periode of corrigeer het boekingsvoorstel en herstart daarna de taak.",
        ),
        "fr": (
            "Période clôturée ou inconnue",
            "La période {period} est clôturée ou n'existe pas dans le logiciel comptable. "
            "Ouvrez la période ou corrigez la proposition d'écriture, puis relancez la tâche.",
        ),
        "en": (
            "Closed or unknown period",
            "Period {period} is closed or does not exist in the accounting package. Open the "
            "period or correct the booking proposal, then restart the task.",
        ),
    },
    _E.INVALID_JOURNAL: {
        "nl": (
            "Onbekend dagboek",
            "Dagboek {journal} bestaat niet in het boekhoudpakket. Maak het dagboek aan of "
            "kies een bestaand dagboek in het boekingsvoorstel en herstart daarna de taak.",
        ),
        "fr": (
            "Journal inconnu",
            "Le journal {journal} n'existe pas dans le logiciel comptable. Créez ce journal ou "
            "choisissez un journal existant dans la proposition d'écriture, puis relancez la "
            "tâche.",
        ),
        "en": (
            "Unknown journal",
            "Journal {journal} does not exist in the accounting package. Create the journal or "
            "choose an existing one in the booking proposal, then restart the task.",
        ),
    },
    _E.INVALID_VAT_CODE: {
        "nl": (
            "Onbekende btw-code",
            "Btw-code {vat_code} bestaat niet in het boekhoudpakket. Voeg de btw-code toe in "
            "het pakket of corrigeer ze in het boekingsvoorstel en herstart daarna de taak.",
        ),
        "fr": (
            "Code TVA inconnu",
            "Le code TVA {vat_code} n'existe pas dans le logiciel comptable. Ajoutez ce code "
            "TVA dans le logiciel ou corrigez-le dans la proposition d'écriture, puis relancez "
            "la tâche.",
        ),
        "en": (
            "Unknown VAT code",
            "VAT code {vat_code} does not exist in the accounting package. Add the VAT code to "
            "the package or correct it in the booking proposal, then restart the task.",
        ),
    },
    _E.DUPLICATE_BOOKING: {
        "nl": (
            "Dubbele boeking",
            "Boekingsvoorstel {proposal_id} is al geboekt in het boekhoudpakket. Controleer de "
            "bestaande boeking: klopt ze, annuleer dan deze taak; klopt ze niet, verwijder ze "
            "dan in het pakket en herstart de taak.",
        ),
        "fr": (
            "Écriture en double",
            "La proposition d'écriture {proposal_id} est déjà comptabilisée dans le logiciel "
            "comptable. Vérifiez l'écriture existante : si elle est correcte, annulez cette "
            "tâche ; sinon, supprimez-la dans le logiciel et relancez la tâche.",
        ),
        "en": (
            "Booking already exists",
            "Booking proposal {proposal_id} is already booked in the accounting package. Check "
            "the existing booking: if it is right, cancel this task; if not, delete it in the "
            "package and restart the task.",
        ),
    },
    _E.UNKNOWN_DOSSIER_CODE: {
        "nl": (
            "Onbekende dossiercode",
            "Er bestaat geen bedrijf met dossiercode {dossier_code} in het boekhoudpakket. Geef "
            "de juiste dossiercode in en herstart de taak; was de activatie een vergissing, "
            "annuleer dan de taak.",
        ),
        "fr": (
            "Code dossier inconnu",
            "Aucune société du logiciel comptable n'a le code dossier {dossier_code}. Saisissez "
            "le bon code dossier et relancez la tâche ; si l'activation était une erreur, "
            "annulez la tâche.",
        ),
        "en": (
            "Unknown dossier code",
            "No company in the accounting package has dossier code {dossier_code}. Enter the "
            "right dossier code and restart the task; if the activation was a mistake, cancel "
            "the task.",
        ),
    },
    _E.PACKAGE_UNREACHABLE: {
        "nl": (
            "Boekhoudpakket onbereikbaar",
            "Het boekhoudpakket was lange tijd niet bereikbaar (laatste fout: {error}). "
            "Controleer of het pakket draait en bereikbaar is (server, licentie, netwerk) en "
            "herstart daarna de taak.",
        ),
        "fr": (
            "Logiciel comptable injoignable",
            "Le logiciel comptable est resté injoignable longtemps (dernière erreur : {error}). "
            "Vérifiez que le logiciel fonctionne et est accessible (serveur, licence, réseau), "
            "puis relancez la tâche.",
        ),
        "en": (
            "Accounting package unreachable",
            "The accounting package could not be reached for a long time (last error: {error}). "
            "Check that the package is running and reachable (server, licence, network), then "
            "restart the task.",
        ),
    },
    _E.DATABASE_ERROR: {
        "nl": (
            "Beschadigde database",
            "De database van bedrijf {dossier_code} in het boekhoudpakket is beschadigd. Ons "
            "supportteam moet ze herstellen; tot dan blijft het dossier geblokkeerd.",
        ),
        "fr": (
            "Base de données endommagée",
            "La base de données de la société {dossier_code} dans le logiciel comptable est "
            "endommagée. Notre équipe support doit la réparer ; le dossier reste bloqué "
            "jusque-là.",
        ),
        "en": (
            "Damaged database",
            "The database of company {dossier_code} in the accounting package is damaged. "
            "Support must repair it and restart the task; the dossier stays blocked until then.",
        ),
    },
    _E.UNKNOWN_ERROR: {
        "nl": (
            "Onbekende fout",
            "De taak is mislukt met een fout die het systeem niet herkent. Ons supportteam moet "
            "dit onderzoeken; tot dan blijft het dossier geblokkeerd.",
        ),
        "fr": (
            "Erreur inconnue",
            "La tâche a échoué avec une erreur que le système ne reconnaît pas. Notre équipe "
            "support doit l'analyser ; le dossier reste bloqué jusque-là.",
        ),
        "en": (
            "Unknown error",
            "The task failed with an error the system does not recognise. Support must "
            "investigate; the dossier stays blocked until then.",
        ),
    },
    _E.UNREADABLE_MESSAGE: {
        "nl": (
            "Onleesbare taak",
            "Het taakbericht kon niet gelezen worden ({error}). Ons supportteam moet het "
            "bewaarde bericht nakijken en de taak corrigeren of annuleren.",
        ),
        "fr": (
            "Tâche illisible",
            "Le message de la tâche n'a pas pu être lu ({error}). Notre équipe support doit "
            "examiner le message conservé et corriger ou annuler la tâche.",
        ),
        "en": (
            "Unreadable task",
            "The task message could not be read ({error}). Support must inspect the kept "
            "message and correct or cancel the task.",
        ),
    },
}

_GENERIC: Mapping[str, tuple[str, str]] = {
    "nl": ("Actie nodig", "De taak is mislukt ({code}). Bekijk de details op de monitoringpagina."),
    "fr": ("Action requise", "La tâche a échoué ({code}). Consultez le détail dans le monitoring."),
    "en": ("Action required", "The task failed ({code}). See the details on the monitoring page."),
}

_MISSING = {"nl": "(onbekend)", "fr": "(inconnu)", "en": "(unknown)"}

_KINDS: Mapping[str, Mapping[str, str]] = {
    "booking_proposal.process": {
        "nl": "Boekingsvoorstel verwerken",
        "fr": "Traiter une proposition d'écriture",
        "en": "Process booking proposal",
    },
    "booking_proposal.delete": {
        "nl": "Boekingsvoorstel verwijderen",
        "fr": "Supprimer une proposition d'écriture",
        "en": "Delete booking proposal",
    },
    "dossier.sync": {
        "nl": "Dossier synchroniseren",
        "fr": "Synchroniser le dossier",
        "en": "Synchronise dossier",
    },
    "dossier.activate": {
        "nl": "Klant/Dossier activeren",
        "fr": "Activer le client/dossier",
        "en": "Activate client/dossier",
    },
}


class _Facts(string.Formatter):
    """Fills `{name}` from the facts; a fact that is not there becomes a placeholder."""

    def __init__(self, missing: str) -> None:
        super().__init__()
        self._missing = missing

    def get_value(self, key: int | str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        value = kwargs.get(str(key))
        return self._missing if value is None or value == "" else str(value)


def language_of(language: str | None) -> str:
    """The supported language closest to `language` (nl when unknown)."""
    lang = (language or "").strip().lower()[:2]
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


def instruction_text(code: str, facts: Mapping[str, str], language: str) -> InstructionText:
    """Title and action for an instruction code, filled with its facts, in `language`."""
    lang = language_of(language)
    entry = _CATALOGUE.get(code)
    title, action = entry[lang] if entry else _GENERIC[lang]
    values = {**facts, "code": code} if entry is None else dict(facts)
    filled = _Facts(_MISSING[lang]).vformat(action, (), values)
    return InstructionText(title=title, action=filled)


def kind_label(kind: str, language: str) -> str:
    """A person's name for a task kind; the kind itself when it has none."""
    labels = _KINDS.get(kind)
    return labels[language_of(language)] if labels else kind


def known_codes() -> tuple[str, ...]:
    """Every code the catalogue has texts for."""
    return tuple(str(code) for code in _CATALOGUE)

"""Settings from `DOSSIERFLOW_*` environment variables, read once, here, by the root.

`Settings` is the dispatcher's section (`dispatcher.settings.Settings`: broker, store,
sequencer, sweeper, API, access) plus what only the root hands out: logging, the
connector's slots and simulated package, and the mail settings it builds the reminder
package's sections from (`smtp()` -> `reminder.mailer.SmtpConfig`, `mail_context()` ->
`reminder.service.MailContext`). Each package reads only its own section.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

from dispatcher.safety import LOOPBACK
from dispatcher.settings import PREFIX, SettingsError
from dispatcher.settings import Settings as DispatcherSettings

if TYPE_CHECKING:
    from reminder.mailer import SmtpConfig
    from reminder.service import MailContext

__all__ = ["PREFIX", "Settings", "SettingsError"]

_FLAGS = {"1": True, "true": True, "on": True, "yes": True, "0": False, "false": False,
          "off": False, "no": False}  # fmt: skip


@dataclass(frozen=True)
class Settings(DispatcherSettings):
    """Every setting with its default; the defaults reach the local services."""

    log_format: str = "auto"  # auto | json | console
    log_level: str = "info"
    # The connector (`dossierflow worker`).
    worker_concurrency: int = 1
    simpackage_path: Path = Path(".dossierflow/simulated-package.sqlite3")
    simpackage_latency_ms: str = "0,0"
    # Mail (the reminder package's sections).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_security: str = "none"  # none | starttls | tls
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_timeout_s: float = 30.0
    mail_from: str = "dossierflow <noreply@dossierflow.local>"
    support_mailbox: str = "support@dossierflow.local"
    # Reminder days are every 14 days from this Monday (2023-11-20 is one).
    reminder_anchor: str = "2023-11-20"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every `DOSSIERFLOW_<NAME>` variable; unknown values raise SettingsError."""
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        defaults = cls()
        for f in fields(cls):
            raw = env.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _convert(f.name, raw, type(getattr(defaults, f.name)))
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Refuse settings no deployment can run with."""
        super().validate()
        if self.log_format not in ("auto", "json", "console"):
            raise SettingsError("DOSSIERFLOW_LOG_FORMAT must be auto, json or console")
        if self.smtp_security not in ("none", "starttls", "tls"):
            raise SettingsError("DOSSIERFLOW_SMTP_SECURITY must be none, starttls or tls")
        mail_remote = self.smtp_host.lower() not in LOOPBACK
        if not self.local and self.smtp_user and self.smtp_security == "none" and mail_remote:
            raise SettingsError(
                "outside the local mode (DOSSIERFLOW_LOCAL_MODE): DOSSIERFLOW_SMTP_USER is set "
                "with DOSSIERFLOW_SMTP_SECURITY=none: the password would cross the network "
                "in clear; use starttls or tls"
            )

    @property
    def latency_range(self) -> tuple[float, float]:
        """Simulated package latency range in seconds."""
        low, _, high = self.simpackage_latency_ms.partition(",")
        try:
            lo = float(low) / 1000
            hi = float(high or low) / 1000
        except ValueError as exc:
            raise SettingsError("DOSSIERFLOW_SIMPACKAGE_LATENCY_MS must be 'min,max'") from exc
        return lo, max(lo, hi)

    def smtp(self) -> SmtpConfig:
        """The reminder package's SMTP section."""
        from reminder.mailer import SmtpConfig

        return SmtpConfig(
            self.smtp_host,
            self.smtp_port,
            self.smtp_security,
            self.smtp_user,
            self.smtp_password,
            self.smtp_timeout_s,
        )

    def mail_context(self) -> MailContext:
        """The reminder package's mail section (ScheduleError for a bad anchor)."""
        from reminder.schedule import parse_anchor
        from reminder.service import MailContext

        return MailContext(
            self.mail_from,
            self.support_mailbox,
            self.monitoring_base_url,
            parse_anchor(self.reminder_anchor),
        )


def _convert(name: str, raw: str, kind: type) -> object:
    if kind is bool:
        flag = raw.strip().lower()
        if flag not in _FLAGS:
            raise SettingsError(f"{PREFIX}{name.upper()}={raw!r} is not one of {sorted(_FLAGS)}")
        return _FLAGS[flag]
    try:
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if issubclass(kind, Path):
            return Path(raw)
    except ValueError as exc:
        raise SettingsError(f"{PREFIX}{name.upper()}={raw!r} is not a {kind.__name__}") from exc
    return raw

"""SMTP security from the settings: STARTTLS and implicit TLS with login, against aiosmtpd."""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from reminder.errors import MailUnavailable
from reminder.mailer import SmtpConfig, SmtpTransport
from reminder.sink import SmtpSink
from tests.integration.test_mail_digest import free_port

pytestmark = pytest.mark.integration

MESSAGE = b"From: a@x.test\r\nTo: b@x.test\r\nSubject: tls\r\nMessage-ID: <1@x>\r\n\r\nhello\r\n"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, valid one day)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return key, cert


def contexts(certificate: tuple[Path, Path]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(certificate[1]), str(certificate[0]))
    client = ssl.create_default_context(cafile=str(certificate[1]))
    return server, client


def test_mail_goes_out_over_starttls_with_login(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    server, client = contexts(certificate)
    port = free_port()
    sink = SmtpSink("127.0.0.1", port, tmp_path / "mail", tls=server, login=("mailer", "s3cret"))
    config = SmtpConfig("127.0.0.1", port, "starttls", "mailer", "s3cret", timeout_s=10)
    with sink:
        SmtpTransport(config, tls=client).send("a@x.test", ["b@x.test"], MESSAGE)
        with pytest.raises(MailUnavailable, match="login refused"):
            wrong = replace(config, password="nope")
            SmtpTransport(wrong, tls=client).send("a@x.test", ["b@x.test"], MESSAGE)
    [mail] = sink.messages()
    assert mail["Subject"] == "tls" and mail.get_all("X-Sink-Rcpt-To") == ["b@x.test"]


def test_mail_goes_out_over_implicit_tls(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    server, client = contexts(certificate)
    port = free_port()
    with SmtpSink("127.0.0.1", port, tmp_path / "mail", tls=server, implicit_tls=True) as sink:
        config = SmtpConfig("127.0.0.1", port, "tls", timeout_s=10)
        SmtpTransport(config, tls=client).send("a@x.test", ["b@x.test"], MESSAGE)
    assert [m["Subject"] for m in sink.messages()] == ["tls"]


def test_an_untrusted_certificate_keeps_the_mail_pending(
    certificate: tuple[Path, Path], tmp_path: Path
) -> None:
    server, _ = contexts(certificate)
    port = free_port()
    with SmtpSink("127.0.0.1", port, tmp_path / "mail", tls=server):
        config = SmtpConfig("127.0.0.1", port, "starttls", timeout_s=10)
        with pytest.raises(MailUnavailable):
            SmtpTransport(config).send("a@x.test", ["b@x.test"], MESSAGE)

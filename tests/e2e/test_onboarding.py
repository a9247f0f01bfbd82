"""The README's "Set up an office" walk-through, run as an operator runs it.

Every step is a `dossierflow` command in its own process (or office-user.sh), on the real
broker and database: create the office, its connector user, a dossier, an admin and a
dossier manager with their tokens; run a dispatcher, the connector (with the office's own
broker user), the API and an SMTP sink; submit an activation over HTTP with a dossier code
the package does not know; the manager gets the instruction mail, then the reminder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from dossierflow.settings import Settings
from dossierflow.tools.cluster import Cluster
from reminder.schedule import next_reminder_day, parse_anchor
from reminder.sink import SmtpSink
from store import InstructionRecord, Store
from tests.integration.test_api_flow import free_port
from tests.waiting import wait_for
from workers.vocabulary import InstructionStatus

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ROOT = Path(__file__).resolve().parents[2]
DOSSIERFLOW = str(Path(sys.executable).with_name("dossierflow"))
RABBITMQCTL = "bash deploy/local/services.sh rabbitmqctl"


def run(env: dict[str, str], *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """One command as typed in a shell; `ok` asserts it succeeded."""
    done = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if ok:
        assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done


def http(method: str, url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    """A JSON request with a bearer token, as a platform service sends it."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def answers(url: str) -> bool:
    """Whether the API answers at all yet."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def mails(directory: Path) -> list[EmailMessage]:
    """The sink's messages, oldest first."""
    return [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(directory.glob("*.eml"))
    ]


@pytest.fixture
def office(name: str) -> Iterator[str]:
    """An office id of this test: broker users are global, so it must not clash."""
    office_id = f"kb-{name[-8:]}"
    yield office_id
    subprocess.run(
        [*RABBITMQCTL.split(), "-q", "delete_user", f"connector-{office_id}"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )


Dossierflow = Callable[..., subprocess.CompletedProcess[str]]


def set_up_office(df: Dossierflow, env: dict[str, str], office: str, vhost: str) -> list[str]:
    """The walk-through's set-up commands; the tokens of the admin and the manager."""
    refused = df("users", "add", "--id", "x", "--office", office, "--role", "admin", ok=False)
    assert refused.returncode == 1 and f"office {office} does not exist" in refused.stderr
    df(
        *("offices", "add", "--id", office, "--name", "Kantoor Brugge"),
        *("--timezone", "Europe/Brussels", "--language", "nl", "--contact", "ops@kb.test"),
    )
    again = df("offices", "add", "--id", office, "--name", "Other", ok=False)
    assert again.returncode == 1 and "exists" in again.stderr
    [listed] = json.loads(df("offices", "list", "--json").stdout)
    assert listed == {
        "id": office,
        "name": "Kantoor Brugge",
        "timezone": "Europe/Brussels",
        "language": "nl",
        "contact": "ops@kb.test",
    }
    shell = {**env, "RABBITMQCTL": RABBITMQCTL}
    user = run(shell, "bash", "deploy/rabbitmq/office-user.sh", office, "s3cret", vhost)
    assert f"connector-{office}" in user.stdout
    df(
        *("dossiers", "add", "--office", office, "--id", "acme"),
        *("--name", "ACME bv", "--code", "ACME01"),
    )
    df(
        *("users", "add", "--id", "anna", "--office", office),
        *("--role", "admin", "--email", "anna@kb.test"),
    )
    df(
        *("users", "add", "--id", "bert", "--office", office, "--role", "dossier_manager"),
        *("--email", "bert@kb.test", "--language", "nl"),
    )
    df("dossiers", "assign", "--office", office, "--dossier", "acme", "--user", "bert")
    [dossier] = json.loads(df("dossiers", "list", "--office", office, "--json").stdout)
    assert dossier == {
        "office": office,
        "id": "acme",
        "name": "ACME bv",
        "code": "ACME01",
        "managers": ["bert"],
    }
    return [df("users", "token", "--id", who).stdout.strip() for who in ("anna", "bert")]


def start_services(cluster: Cluster, office: str, smtp: int, api_port: int, maildir: Path) -> str:
    """The sink, a dispatcher, the office's connector (its own broker user), the API."""
    cluster.start("sink", "reminder", "sink", "--port", str(smtp), "--dir", str(maildir))
    cluster.start_dispatcher()
    parts = urllib.parse.urlsplit(cluster.amqp_url)
    connector = f"amqp://connector-{office}:s3cret@{parts.hostname}:{parts.port}{parts.path}"
    own_user = {"DOSSIERFLOW_AMQP_URL": connector}
    cluster.start("connector", "worker", "--office", office, env=own_user)
    cluster.start("api", "api", "--port", str(api_port))
    base = f"http://127.0.0.1:{api_port}"
    wait_for(lambda: answers(f"{base}/v1/tasks"), 60, "the API answering")
    return base


def test_an_office_set_up_by_its_commands_gets_its_mail_and_its_reminder(
    settings: Settings,
    store: Store,
    make_cluster: Callable[..., Cluster],
    office: str,
    tmp_path: Path,
) -> None:
    smtp, api_port, maildir = free_port(), free_port(), tmp_path / "mail"
    cluster = make_cluster(smtp_port=smtp, monitoring_base_url=f"http://127.0.0.1:{api_port}")
    env = cluster.env()

    def df(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return run(env, DOSSIERFLOW, *args, ok=ok)

    # The cluster's virtual host is named like its database.
    admin_token, manager_token = set_up_office(df, env, office, settings.mongo_db)
    base = start_services(cluster, office, smtp, api_port, maildir)

    # The package has no company ACME01 yet: the activation fails with an instruction.
    payload = {"dossier_code": "ACME01"}
    activation = {"dossier": "acme", "kind": "dossier.activate", "payload": payload}
    task = http("POST", f"{base}/v1/tasks", admin_token, activation)

    def failed() -> dict[str, Any] | None:
        shown: dict[str, Any] = http("GET", f"{base}/v1/tasks/{task['id']}", manager_token)
        return shown if shown["status"] == "failed" else None

    assert wait_for(failed, 90, "the activation failed (seen by the manager)", every=0.5)

    df("reminder", "mail", "--once")
    [mail] = wait_for(lambda: mails(maildir), 10, "the instruction mail")
    assert mail["X-Sink-Rcpt-To"] == "bert@kb.test"
    assert "acme" in mail["Subject"]

    [instruction] = store.instructions.find(office=office, status=InstructionStatus.OPEN)
    created = instruction.created_at.replace(tzinfo=UTC).astimezone(ZoneInfo("Europe/Brussels"))
    anchor = parse_anchor(settings.reminder_anchor)
    day = next_reminder_day(created.date() + timedelta(days=4), anchor)  # 5 days old or more
    df("reminder", "run", "--date", day.isoformat())
    digest = wait_for(lambda: mails(maildir)[1:], 10, "the reminder digest")[0]
    assert digest["X-Sink-Rcpt-To"] == "bert@kb.test"
    assert digest["Subject"] != mail["Subject"]
    assert "acme" in digest.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def ghost_instruction(n: int, severity: str) -> InstructionRecord:
    """An open instruction of the office `ghost`, which nobody created."""
    return InstructionRecord(
        id=f"t{n}/1", task_id=f"t{n}", office="ghost", dossier="d1", kind="dossier.activate",
        code="unknown_dossier_code" if severity == "orange" else "database_error",
        severity=severity, facts={"dossier_code": "X"}, status=InstructionStatus.OPEN,
        created_at=datetime(2023, 11, 10, 9, tzinfo=UTC),
    )  # fmt: skip


def test_instructions_of_an_office_that_does_not_exist_are_a_clear_error_not_utc(
    store: Store, make_cluster: Callable[..., Cluster], tmp_path: Path
) -> None:
    smtp = free_port()
    env = make_cluster(smtp_port=smtp).env()

    def df(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return run(env, DOSSIERFLOW, *args, ok=ok)

    store.instructions.insert(ghost_instruction(1, "orange"))
    store.instructions.insert(ghost_instruction(2, "red"))
    with SmtpSink("127.0.0.1", smtp, tmp_path / "mail") as sink:
        mailed = df("reminder", "mail", "--once", ok=False)
        assert mailed.returncode == 1
        assert "office.unknown" in mailed.stdout + mailed.stderr
        # Support hears of the red one at once, its time marked UTC; the orange one waits.
        [support] = sink.messages()
        assert support["X-Sink-Rcpt-To"] == env["DOSSIERFLOW_SUPPORT_MAILBOX"]
        assert "(UTC)" in support.get_body(("plain",)).get_content()  # type: ignore[union-attr]

        reminded = df("reminder", "run", "--date", "2023-11-20", ok=False)
        assert reminded.returncode == 1
        assert "unknown office(s) ghost" in reminded.stderr
        assert "dossierflow offices add" in reminded.stderr

        df("offices", "add", "--id", "ghost", "--name", "Ghost", "--timezone", "Europe/Brussels")
        df(
            "users",
            "add",
            "--id",
            "gina",
            "--office",
            "ghost",
            "--role",
            "admin",
            "--email",
            "g@g.t",
        )
        df("reminder", "mail", "--once")
        accountant = wait_for(lambda: sink.messages()[1:], 10, "the waiting mail")[0]
        assert accountant["X-Sink-Rcpt-To"] == "g@g.t"
        assert "10/11/2023 10:00" in accountant.get_body(("plain",)).get_content()  # type: ignore[union-attr]

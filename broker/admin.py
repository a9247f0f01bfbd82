"""The RabbitMQ management HTTP API: virtual hosts and queue figures (stdlib only)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from broker.addresses import map_urls, split_urls
from broker.errors import AdminError


class Admin:
    """A small client of the management API, e.g. `http://guest:guest@127.0.0.1:15672/api`.

    The URL may list the API of several cluster nodes (comma or semicolon separated): a
    call goes to the node that answered last and moves on to the next one when a node
    cannot be reached; an HTTP error is an answer and is not retried elsewhere.
    """

    def __init__(self, api_url: str, timeout: float = 10.0) -> None:
        self._nodes = [_node(url) for url in split_urls(api_url)]
        self._current = 0
        self._timeout = timeout

    def _call(self, method: str, path: str, body: Any = None, missing: Any = ...) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        failures: list[str] = []
        for step in range(len(self._nodes)):
            index = (self._current + step) % len(self._nodes)
            base, auth = self._nodes[index]
            request = urllib.request.Request(
                base + path,
                data=data,
                method=method,
                headers={"Authorization": auth, "Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=self._timeout) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                if method == "DELETE" and exc.code == 404:
                    return None
                if exc.code == 404 and missing is not ...:
                    return missing
                raise AdminError(f"{method} {path}: HTTP {exc.code}") from exc
            except OSError as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            self._current = index
            return json.loads(raw) if raw else None
        raise AdminError(f"{method} {path}: {'; '.join(failures)}")

    @staticmethod
    def _q(name: str) -> str:
        return urllib.parse.quote(name, safe="")

    def create_vhost(self, vhost: str, user: str = "guest") -> None:
        """Create a virtual host (idempotent) and give `user` full rights in it."""
        self._call("PUT", f"/vhosts/{self._q(vhost)}", {})
        self._call(
            "PUT",
            f"/permissions/{self._q(vhost)}/{self._q(user)}",
            {"configure": ".*", "write": ".*", "read": ".*"},
        )

    def delete_vhost(self, vhost: str) -> None:
        """Delete a virtual host with everything in it (absent is fine)."""
        self._call("DELETE", f"/vhosts/{self._q(vhost)}")

    def vhost(self, vhost: str) -> dict[str, Any]:
        """Figures of a virtual host, e.g. `message_stats` (refreshed every ~5 s by the broker)."""
        result: dict[str, Any] = self._call("GET", f"/vhosts/{self._q(vhost)}")
        return result

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        """Figures of one queue (messages, consumers, ...)."""
        result: dict[str, Any] = self._call("GET", f"/queues/{self._q(vhost)}/{self._q(name)}")
        return result

    def queue_if_any(self, vhost: str, name: str) -> dict[str, Any] | None:
        """Figures of one queue, None when it does not exist (404)."""
        found: dict[str, Any] | None = self._call(
            "GET", f"/queues/{self._q(vhost)}/{self._q(name)}", missing=None
        )
        return found

    def purge_queue(self, vhost: str, name: str) -> None:
        """Delete every ready message of a queue (unacknowledged ones stay)."""
        self._call("DELETE", f"/queues/{self._q(vhost)}/{self._q(name)}/contents")

    def delete_queue(self, vhost: str, name: str) -> None:
        """Delete a queue with its messages (absent is fine)."""
        self._call("DELETE", f"/queues/{self._q(vhost)}/{self._q(name)}")

    def close_connections(self, vhost: str) -> int:
        """Make the broker close every client connection of a virtual host; how many."""
        found = self._call("GET", f"/vhosts/{self._q(vhost)}/connections?columns=name") or []
        for conn in found:
            self._call("DELETE", f"/connections/{self._q(str(conn['name']))}")
        return len(found)

    def queues(self, vhost: str) -> list[dict[str, Any]]:
        """Figures of every queue of a virtual host."""
        result: list[dict[str, Any]] = self._call("GET", f"/queues/{self._q(vhost)}")
        return result


def _node(api_url: str) -> tuple[str, str]:
    """(base URL without credentials, Authorization header) of one API URL."""
    parts = urllib.parse.urlsplit(api_url)
    base = (
        urllib.parse.urlunsplit(
            (
                parts.scheme,
                parts.hostname + (f":{parts.port}" if parts.port else ""),
                parts.path.rstrip("/"),
                "",
                "",
            )
        )
        if parts.hostname
        else api_url.rstrip("/")
    )
    user = urllib.parse.unquote(parts.username or "guest")
    password = urllib.parse.unquote(parts.password or "guest")
    return base, "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def vhost_of(amqp_url: str) -> str:
    """The virtual host an AMQP URL (the first of a list) names; "/" when it names none."""
    path = urllib.parse.urlsplit(split_urls(amqp_url)[0]).path
    return urllib.parse.unquote(path[1:]) if len(path) > 1 else "/"


def with_vhost(amqp_url: str, vhost: str) -> str:
    """The same AMQP URL (or each URL of a list) pointing at another virtual host."""

    def one(url: str) -> str:
        parts = urllib.parse.urlsplit(url)
        return urllib.parse.urlunsplit(
            (parts.scheme, parts.netloc, "/" + urllib.parse.quote(vhost, safe=""), parts.query, "")
        )

    return map_urls(amqp_url, one)

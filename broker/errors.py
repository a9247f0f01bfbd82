"""Errors of the broker package: one root, AMQP-client exceptions mapped at the adapter."""

from __future__ import annotations

from typing import Any


class BrokerError(Exception):
    """Root of every error raised by the broker package."""


class ConnectionLost(BrokerError):
    """The broker connection or channel closed; the caller may reconnect."""


class ChannelRefused(ConnectionLost):
    """The broker refused a request and closed the channel (403 access, 404 not found)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class BrokerUnavailable(BrokerError):
    """The broker could not be reached within the bounded reconnection attempts."""


class PublishNotConfirmed(BrokerError):
    """The broker nacked a publish: the message is not stored and must be sent again.

    A full queue with `reject-publish` nacks (a control partition past its byte limit).
    `refused` holds what a batch publisher sent that was nacked, to send again.
    """

    def __init__(self, message: str, refused: list[Any] | None = None) -> None:
        super().__init__(message)
        self.refused = refused or []


class Unroutable(BrokerError):
    """A mandatory publish reached no queue (missing topology or binding)."""


class DecodeError(BrokerError):
    """Bytes that are not a valid envelope; `raw` keeps a bounded copy for diagnosis."""

    def __init__(self, reason: str, raw: bytes = b"") -> None:
        super().__init__(reason)
        self.reason = reason
        self.raw = raw


class AdminError(BrokerError):
    """The RabbitMQ management API refused a request."""

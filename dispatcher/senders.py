"""Who may send what into a control partition: a pure rule over one delivery's facts.

Three ways lead into a partition, and the broker's permissions decide who can take each:

- the events exchange (`dossierflow.events`): connectors, each only with routing keys of
  its own office (topic permission); whatever comes this way is a connector's event;
- the control exchange: the dispatcher (timers, sweeper) and the API (commands);
- the dead-letter and retry exchanges: the broker's own dead-lettering and expiry.

The rule believes an event only as a started/done/failed report without an `x-death`
header (a connector can set any header, only the broker sets it truthfully). With
per-office broker logins configured (`connector_prefix`), an event must also carry the
`user_id` of the connector login of the office its envelope names, and anything else the
`user_id` of a login that may send commands. RabbitMQ refuses a publish whose `user_id`
is not the publisher's login, so the check costs a string comparison per message. Without
per-office logins (the local mode, one login for everything) the broker has nothing to
tell apart and only the exchange rules apply.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker import topology
from broker.rabbitmq import Delivery
from dispatcher.inbound import Death, Done, Failed, Message, Started

# What a connector reports; nothing else may come through the events exchange.
EVENTS = (Started, Done, Failed)


@dataclass(frozen=True)
class Senders:
    """The broker logins the dispatcher believes, and for what."""

    # Office O's connectors log in as `<prefix>O`; "" when there are no per-office logins.
    connector_prefix: str = ""
    # Logins that may send commands and timers (the dispatcher's own, the API's).
    commanders: frozenset[str] = frozenset()

    @classmethod
    def of(cls, connector_prefix: str, own: str, others: Iterable[str] = ()) -> Senders:
        """The rule for a dispatcher logged in as `own`, with `others` sending commands too."""
        names = {own, *(o.strip() for o in others)} - {""}
        return cls(connector_prefix, frozenset(names))

    def refusal(
        self, exchange: str, user_id: str, office: str, message: Message, dead: bool
    ) -> str:
        """Why `message` must not be believed, "" when its sender may send it.

        `exchange` is the one it was published to (a dead letter's: the dead-letter
        exchange), `office` the one its envelope names, `dead` whether it has `x-death`.
        """
        if exchange == topology.EVENTS_EXCHANGE:
            if dead:
                return "an event with an x-death header (only the broker dead-letters)"
            if not isinstance(message, EVENTS):
                return f"a {type(message).__name__} cannot come through the events exchange"
            if self.connector_prefix and user_id != self.connector_prefix + office:
                return f"an event of office {office} not sent by its connector login"
            return ""
        if self.connector_prefix and user_id not in self.commanders:
            # Dead letters and expired timers keep the `user_id` of whoever published
            # the work message or the timer: the dispatcher.
            return "sent by a login that may not send commands"
        return ""


def death_of(delivery: Delivery) -> Death | None:
    """The dead-lettering facts of a work message, None for anything else.

    Work queues dead-letter into the dead-letter exchange, which a delivery then names as
    its exchange; an `x-death` on a message published anywhere else is no dead letter.
    """
    death = delivery.death
    if death is None or delivery.exchange != topology.DEAD_EXCHANGE:
        return None  # not dead-lettered, or an expired retry timer (exchange: control)
    if not str(death.get("queue", "")).startswith("dossierflow.work."):
        return None
    run = delivery.header(topology.RUN_HEADER)
    return Death(
        reason=str(death.get("reason", "")),
        queue=str(death.get("queue", "")),
        count=max(int(death.get("count", 1) or 1), delivery.delivery_count),
        run=int(run) if run.isascii() and run.isdigit() else None,
    )

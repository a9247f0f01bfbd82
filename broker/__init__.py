"""Everything AMQP: topology, the envelope, publishing with confirms, consuming with acks."""

from broker.errors import (
    BrokerError,
    BrokerUnavailable,
    ConnectionLost,
    DecodeError,
    PublishNotConfirmed,
    Unroutable,
)
from broker.messages import Envelope, MessageType, decode, dossier_key, encode, valid_id
from broker.rabbitmq import Channel, Connection, Delivery
from broker.topology import Topology

__all__ = [
    "BrokerError",
    "BrokerUnavailable",
    "Channel",
    "Connection",
    "ConnectionLost",
    "DecodeError",
    "Delivery",
    "Envelope",
    "MessageType",
    "PublishNotConfirmed",
    "Topology",
    "Unroutable",
    "decode",
    "dossier_key",
    "encode",
    "valid_id",
]

"""Reading a delivery's attempt count the same way on RabbitMQ 3.x and 4.x."""

from __future__ import annotations

from typing import Any

import pytest

from broker.rabbitmq import Delivery


def delivery(redelivered: bool, **headers: Any) -> Delivery:
    return Delivery(b"", 1, redelivered, "o.d", "x", "m", headers)


@pytest.mark.parametrize(
    ("redelivered", "headers", "before"),
    [
        (False, {}, 0),  # first delivery, any version
        (True, {"x-delivery-count": 1}, 1),  # 3.x: every return counted
        (True, {"x-delivery-count": 0, "x-acquired-count": 2}, 2),  # 4.3: acquisitions
        (True, {}, 1),  # a version that sets no header still says "redelivered"
        (True, {"x-delivery-count": "3"}, 1),  # a malformed header is ignored
    ],
)
def test_attempts_before_read_on_every_version(
    redelivered: bool, headers: dict[str, Any], before: int
) -> None:
    assert delivery(redelivered, **headers).delivery_count == before

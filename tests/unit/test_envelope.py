"""The envelope v1 wire format: pinned bytes and refusal of anything else."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broker.errors import DecodeError
from broker.messages import RAW_KEEP_BYTES, Envelope, MessageType, decode, encode

GOLDEN = Envelope(
    type=MessageType.RUN,
    task_id="5f0c2a9e0b8d4c6fa1e2d3c4b5a69788",
    office="office1",
    dossier="d042",
    at=datetime(2024, 3, 5, 14, 7, 9, 123000, tzinfo=UTC),
    data={"kind": "dossier.sync", "payload": {"dossier_code": "ACME-01"}, "seq": 7},
)
GOLDEN_BYTES = (
    b'{"at":"2024-03-05T14:07:09.123Z","data":{"kind":"dossier.sync",'
    b'"payload":{"dossier_code":"ACME-01"},"seq":7},"dossier":"d042",'
    b'"office":"office1","task_id":"5f0c2a9e0b8d4c6fa1e2d3c4b5a69788",'
    b'"type":"task.run","v":1}'
)


def test_envelope_bytes_are_pinned() -> None:
    assert encode(GOLDEN) == GOLDEN_BYTES


def test_golden_bytes_decode_to_the_same_envelope() -> None:
    decoded = decode(GOLDEN_BYTES)
    assert decoded == GOLDEN
    assert decoded.routing_key == "office1.d042"
    assert decoded.id == GOLDEN.task_id


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff\xfe not utf-8",
        b"not json",
        b"[1, 2]",
        GOLDEN_BYTES.replace(b'"v":1', b'"v":2'),
        GOLDEN_BYTES.replace(b"task.run", b"task.teleport"),
        GOLDEN_BYTES.replace(b"2024-03-05T14:07:09.123Z", b"yesterday"),
        GOLDEN_BYTES.replace(b'"office":"office1"', b'"office":"off.ice"'),
        GOLDEN_BYTES.replace(b'"task_id":"5f0c2a9e0b8d4c6fa1e2d3c4b5a69788"', b'"task_id":7'),
        GOLDEN_BYTES.replace(b'"data":{', b'"data":[{').replace(b',"dossier"', b'],"dossier"'),
    ],
)
def test_anything_but_a_v1_envelope_is_refused_with_its_bytes_kept(raw: bytes) -> None:
    with pytest.raises(DecodeError) as caught:
        decode(raw)
    assert caught.value.raw == raw[:RAW_KEEP_BYTES]


def test_kept_raw_bytes_are_bounded() -> None:
    with pytest.raises(DecodeError) as caught:
        decode(b"x" * (RAW_KEEP_BYTES * 3))
    assert len(caught.value.raw) == RAW_KEEP_BYTES


@given(st.binary(max_size=512))
def test_random_bytes_never_raise_anything_but_decode_error(raw: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(raw)

"""Task ids sort in submission order within a client, so late announcements keep order."""

from __future__ import annotations

from broker.messages import valid_id
from dispatcher.client import new_task_id


def test_task_ids_of_one_client_sort_in_the_order_they_were_made() -> None:
    ids = [new_task_id() for _ in range(2000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and valid_id(i) for i in ids)

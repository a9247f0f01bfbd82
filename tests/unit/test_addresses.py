"""A setting may name every node of a broker cluster; clients spread over them."""

from __future__ import annotations

from collections import Counter

from broker.addresses import join_urls, map_urls, rotated, split_urls
from broker.admin import with_vhost
from broker.topology import Topology, partition_arguments, quorum_arguments, work_arguments
from dossierflow.settings import Settings

NODES = "amqp://u:p@127.0.0.1:5681/%2F, amqp://u:p@127.0.0.1:5682/%2F;amqp://u:p@127.0.0.1:5683/%2F"


def test_one_url_is_a_list_of_one() -> None:
    assert split_urls("amqp://guest:guest@127.0.0.1:5672/%2F") == [
        "amqp://guest:guest@127.0.0.1:5672/%2F"
    ]


def test_commas_and_semicolons_separate_nodes() -> None:
    urls = split_urls(NODES)
    assert [u.rsplit(":", 1)[1] for u in urls] == ["5681/%2F", "5682/%2F", "5683/%2F"]
    assert split_urls(join_urls(urls)) == urls
    assert split_urls(NODES + ",") == urls


def test_with_vhost_changes_every_node() -> None:
    urls = split_urls(with_vhost(NODES, "t1"))
    assert len(urls) == 3 and all(u.endswith(":568" + u[-4] + "/t1") for u in urls)
    assert map_urls("a,b", str.upper) == "A,B"


def test_rotation_keeps_every_node_and_varies_the_first() -> None:
    urls = split_urls(NODES)
    assert rotated(urls, 1) == [urls[1], urls[2], urls[0]]
    firsts = Counter(rotated(urls)[0] for _ in range(300))
    assert set(firsts) == set(urls)
    assert all(sorted(rotated(urls)) == sorted(urls) for _ in range(20))


def test_quorum_replicas_are_explicit_only_when_set() -> None:
    assert quorum_arguments() == {"x-queue-type": "quorum"}
    assert partition_arguments(3)["x-quorum-initial-group-size"] == 3
    assert work_arguments(5, 3)["x-quorum-initial-group-size"] == 3
    assert "x-quorum-initial-group-size" not in work_arguments(5)
    settings = Settings.from_env({"DOSSIERFLOW_QUORUM_REPLICAS": "3"})
    assert settings.topology() == Topology(8, 5, (10, 60, 300, 1800), 3)

"""`dossierflow dispatcher` and `dossierflow worker`: the long-running processes."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import structlog

from dossierflow.settings import Settings
from dossierflow.signals import stop_on_signals

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

log = structlog.get_logger("dossierflow")


def serve_metrics(
    settings: Settings, args: argparse.Namespace, registry: CollectorRegistry
) -> None:
    """Serve /metrics on the process's --metrics-port, else DOSSIERFLOW_METRICS_PORT (0: off)."""
    from workers.metrics import serve

    port = settings.metrics_port if args.metrics_port is None else args.metrics_port
    if port:
        port = serve(registry, port, settings.metrics_addr)
        log.info("metrics.serving", url=f"http://{settings.metrics_addr}:{port}/metrics")


def cmd_dispatcher(settings: Settings, args: argparse.Namespace) -> int:
    """Run the sequencer partitions and the sweeper."""
    from dispatcher.metrics import SequencerMetrics
    from dispatcher.service import Dispatcher
    from dossierflow.tools.stats import counting
    from store import Store

    metrics = SequencerMetrics(
        per_office=settings.metrics_office_labels, office_limit=settings.metrics_office_limit
    )
    serve_metrics(settings, args, metrics.registry)
    # `dossierflow bench` sets DOSSIERFLOW_STATS_DIR to learn how many store commands a task costs.
    with counting("dispatcher") as listeners:
        store = Store.connect(settings.mongo_url, settings.mongo_db, listeners=listeners)
        code = Dispatcher(settings, store, stop_on_signals(), metrics).run()
        store.close()
    return code


def package_factory(settings: Settings, adapter: str) -> Callable[[], object]:
    """The accounting-package adapter named on the command line."""
    from workers.accounting.noop import NoopPackage
    from workers.accounting.simulated import SimulatedPackage

    if adapter == "noop":
        return NoopPackage
    settings.simpackage_path.parent.mkdir(parents=True, exist_ok=True)
    return lambda: SimulatedPackage(settings.simpackage_path, latency=settings.latency_range)


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    """Run a connector for one office."""
    from broker.messages import valid_id
    from workers.metrics import WorkerMetrics
    from workers.runner import Worker, WorkerConfig

    if not valid_id(args.office):
        print(f"dossierflow worker: bad office id {args.office!r}", file=sys.stderr)
        return 2
    config = WorkerConfig(
        amqp_url=settings.amqp_url,
        office=args.office,
        concurrency=args.concurrency or settings.worker_concurrency,
        heartbeat_s=settings.heartbeat_s,
        delivery_limit=settings.delivery_limit,
        partitions=settings.partitions,
        quorum_replicas=settings.quorum_replicas,
        max_message_bytes=settings.message_limit_bytes,
    )
    metrics = WorkerMetrics(
        per_office=settings.metrics_office_labels, office_limit=settings.metrics_office_limit
    )
    serve_metrics(settings, args, metrics.registry)
    factory = package_factory(settings, args.adapter)
    Worker(config, factory, stop_on_signals(), metrics).run()  # type: ignore[arg-type]
    return 0

"""`dossierflow`: the single composition root. Reads settings once and wires the parts."""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

from dispatcher import logs
from dispatcher.settings import Settings, SettingsError
from dispatcher.signals import stop_on_signals

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
    from dispatcher.stats import counting
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
        max_message_bytes=settings.payload_limit_bytes + 16 * 1024,
    )
    metrics = WorkerMetrics(
        per_office=settings.metrics_office_labels, office_limit=settings.metrics_office_limit
    )
    serve_metrics(settings, args, metrics.registry)
    factory = package_factory(settings, args.adapter)
    Worker(config, factory, stop_on_signals(), metrics).run()  # type: ignore[arg-type]
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Run the whole system on a demo workload and check the outcome."""
    from dispatcher.demo import run_demo

    # The demo's own output is its report; its processes log to files.
    logs.configure(settings.log_format, "warning")

    return run_demo(settings, tasks=args.tasks, dossiers_count=args.dossiers)


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Measure throughput and submit-to-start latency with a no-op package."""
    from dispatcher.bench import BenchOptions, run_bench

    options = BenchOptions(args.tasks, args.dossiers, args.workers, args.rate, args.batch)
    return run_bench(settings, options)


def cmd_chaos(settings: Settings, args: argparse.Namespace) -> int:
    """Run the system under injected faults and check it the way Jepsen checks."""
    from dispatcher.chaos import Options, run_chaos
    from dispatcher.chaosfaults import KNOWN_FAULTS

    # Every fault by default; those the services do not allow (node-loss without the
    # three-node cluster) are left out by the run.
    faults = tuple(f for f in args.faults.split(",") if f) if args.faults else KNOWN_FAULTS
    unknown = sorted(set(faults) - set(KNOWN_FAULTS))
    if unknown:
        print(f"dossierflow chaos: unknown faults {unknown}; known: {', '.join(KNOWN_FAULTS)}")
        return 2
    logs.configure(settings.log_format, "warning")  # its processes log to files
    options = Options(args.tasks, args.dossiers, args.seed, faults, args.duration)
    return run_chaos(settings, options)


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    parser = argparse.ArgumentParser(prog="dossierflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    dispatcher = sub.add_parser(
        "dispatcher", help="run the sequencer and sweeper (several may run)"
    )
    worker = sub.add_parser("worker", help="run a connector for one office")
    for process in (dispatcher, worker):
        process.add_argument(
            "--metrics-port",
            type=int,
            help="serve /metrics on this port (0: off; default: DOSSIERFLOW_METRICS_PORT)",
        )
    worker.add_argument("--office", required=True)
    worker.add_argument("--concurrency", type=int, default=0, help="parallel slots")
    worker.add_argument("--adapter", choices=["simulated", "noop"], default="simulated")
    demo = sub.add_parser("demo", help="the whole system on a demo workload")
    demo.add_argument("--tasks", type=int, default=2000)
    demo.add_argument("--dossiers", type=int, default=100)
    bench = sub.add_parser("bench", help="throughput and latency with a no-op package")
    bench.add_argument("--tasks", type=int, default=5000)
    bench.add_argument("--dossiers", type=int, default=500)
    bench.add_argument("--workers", type=int, default=4)
    bench.add_argument("--rate", type=float, default=0.0, help="tasks/s to submit; 0: at once")
    # The platform's nightly loads come in batches; --batch 1 submits one task per call.
    bench.add_argument("--batch", type=int, default=100, help="tasks per submit call")
    chaos = sub.add_parser("chaos", help="the system under injected faults, checked")
    chaos.add_argument("--tasks", type=int, default=1000)
    chaos.add_argument("--dossiers", type=int, default=50)
    chaos.add_argument("--seed", type=int, default=1)
    chaos.add_argument("--faults", default="", help="comma-separated; default: all")
    chaos.add_argument("--duration", type=float, default=90.0, help="seconds of faults")
    return parser


Command = Callable[[Settings, argparse.Namespace], int]
# Packages that contribute subcommands: each module has `add_commands(sub) -> dict[str, Command]`.
PLUGINS = (
    "dispatcher.ops",
    "reminder.cli",
    "dispatcher.api.cli",
    "dispatcher.onboarding",
    "dispatcher.retention",
)

COMMANDS: dict[str, Command] = {
    "dispatcher": cmd_dispatcher,
    "worker": cmd_worker,
    "demo": cmd_demo,
    "bench": cmd_bench,
    "chaos": cmd_chaos,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dossierflow` console script."""
    parser = build_parser()
    commands = dict(COMMANDS)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    argv = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in argv if not a.startswith("-")), None)
    # A dispatcher or connector loads neither the API nor the mail code it does not run.
    for plugin in () if first in COMMANDS else PLUGINS:
        try:
            module = importlib.import_module(plugin)
        except ModuleNotFoundError:
            continue
        commands.update(module.add_commands(sub))
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"dossierflow: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format, settings.log_level)
    # `kill -USR1 <pid>` prints every thread's stack to stderr: how ops see a stuck process.
    if sys.__stderr__ is not None:
        with contextlib.suppress(AttributeError, OSError, ValueError):  # no real stderr: skip
            faulthandler.register(signal.SIGUSR1, file=sys.__stderr__, all_threads=True)
    return commands[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())

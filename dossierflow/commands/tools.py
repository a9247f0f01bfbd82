"""`dossierflow demo`, `bench` and `chaos`: the tools that run the whole system."""

from __future__ import annotations

import argparse

from dossierflow import logs
from dossierflow.settings import Settings
from dossierflow.signals import exit_on_sigterm


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    """Run the whole system on a demo workload and check the outcome."""
    from dossierflow.tools.demo import run_demo

    exit_on_sigterm()
    # The demo's own output is its report; its processes log to files.
    logs.configure(settings.log_format, "warning")

    return run_demo(settings, tasks=args.tasks, dossiers_count=args.dossiers)


def cmd_bench(settings: Settings, args: argparse.Namespace) -> int:
    """Measure throughput and submit-to-start latency with a no-op package."""
    from dossierflow.tools.bench import BenchOptions, run_bench

    exit_on_sigterm()
    options = BenchOptions(args.tasks, args.dossiers, args.workers, args.rate, args.batch)
    return run_bench(settings, options)


def cmd_chaos(settings: Settings, args: argparse.Namespace) -> int:
    """Run the system under injected faults and check it the way Jepsen checks."""
    from dossierflow.tools.chaos import Options, run_chaos
    from dossierflow.tools.chaosfaults import DEFAULT_FAULTS, KNOWN_FAULTS

    exit_on_sigterm()
    # Every fault but the opt-in ones (mailer-kill) by default; those the services do not
    # allow (node-loss without the three-node cluster) are left out by the run.
    faults = tuple(f for f in args.faults.split(",") if f) if args.faults else DEFAULT_FAULTS
    unknown = sorted(set(faults) - set(KNOWN_FAULTS))
    if unknown:
        print(f"dossierflow chaos: unknown faults {unknown}; known: {', '.join(KNOWN_FAULTS)}")
        return 2
    logs.configure(settings.log_format, "warning")  # its processes log to files
    options = Options(args.tasks, args.dossiers, args.seed, faults, args.duration)
    return run_chaos(settings, options)

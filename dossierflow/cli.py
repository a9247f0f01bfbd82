"""`dossierflow`: the composition root. Reads settings once, then runs one command.

The grammar of every command is in `dossierflow.parser`, which imports nothing the
commands run; the module of the command named on the command line is imported only
once its arguments are parsed, so a connector loads neither the API nor the mail code.
A command whose module cannot be imported fails with its error, never silently.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import importlib
import signal
import sys
from collections.abc import Callable, Sequence

from dossierflow import logs
from dossierflow.parser import RUN, build_parser
from dossierflow.settings import Settings, SettingsError

Command = Callable[[Settings, argparse.Namespace], int]


def command(args: argparse.Namespace) -> Command:
    """The function that runs the parsed command, its module imported now."""
    module_name, _, function = getattr(args, RUN).partition(":")
    runner: Command = getattr(importlib.import_module(module_name), function)
    return runner


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dossierflow` console script."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
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
    return command(args)(settings, args)


if __name__ == "__main__":
    sys.exit(main())

"""`python -m dossierflow` runs the `dossierflow` command line."""

import sys

from dossierflow.cli import main

sys.exit(main())

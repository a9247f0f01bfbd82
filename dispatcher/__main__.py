"""`python -m dispatcher` runs the `dossierflow` command line."""

import sys

from dispatcher.cli import main

sys.exit(main())

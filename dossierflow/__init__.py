"""dossierflow's composition root: the command line, settings, logging and the tools.

`broker`, `store`, `workers`, `dispatcher` and `reminder` import nothing from here
(an import-linter contract, `make lint`); this package builds their settings and wires
them into processes.
"""

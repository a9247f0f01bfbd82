# dossierflow developer tasks. `make` alone lists them.
# Local services (RabbitMQ + FerretDB on 127.0.0.1) come from deploy/local/services.sh.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
SERVICES    := deploy/local/services.sh
PYTEST_ARGS ?=
SUDO        := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.DEFAULT_GOAL := help
.PHONY: help venv services stop status demo test lint bench clean distclean messages catalogs

help: ## list the targets
	@echo "usage: make <target>"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 12 | sed 's/^/  /'
	@echo "  (make test PYTEST_ARGS='-k order -x' passes arguments to pytest)"

venv: $(VENV)/.installed ## create .venv and install the project with its dev extras

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) || { \
	    echo "make: '$(PYTHON) -m venv' failed; installing python3-venv" >&2; rm -rf $(VENV); \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
	    $(PYTHON) -m venv $(VENV); }

# Reinstalls only when pyproject.toml changes (the stamp is older) or .venv is new.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

services: ## start RabbitMQ and FerretDB (no-op when running)
	@$(SERVICES) start

stop: ## stop RabbitMQ and FerretDB
	@$(SERVICES) stop

status: ## show whether the local services run
	@$(SERVICES) status

demo: venv services catalogs ## run the whole system on a demo workload
	$(BIN)/dossierflow demo

test: venv services catalogs ## run the test suite against the local services
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv ## ruff check, ruff format --check, mypy, lint-imports (runs all four)
	@rc=0; \
	$(BIN)/ruff check . || rc=1; \
	$(BIN)/ruff format --check . || rc=1; \
	$(BIN)/mypy || rc=1; \
	$(BIN)/lint-imports --no-cache || rc=1; \
	exit $$rc

bench: venv services ## throughput and latency with a no-op package
	$(BIN)/dossierflow bench --tasks 5000 --dossiers 500 --workers 4

# The page's translations: gettext catalogs through Babel. `messages` after changing a text
# of the page, then translate the new entries in the .po files; `catalogs` compiles them
# (the .mo files are committed too, so an installed package needs no build step).
LOCALES := dispatcher/api/locale
BABEL   := $(BIN)/pybabel

messages: venv ## extract the page's texts and update the nl, fr, en catalogs
	$(BABEL) -q extract -F dispatcher/api/babel.cfg -k N_ --no-location --sort-output \
	    --project dossierflow --copyright-holder dossierflow -o $(LOCALES)/messages.pot dispatcher/api
	$(BABEL) -q update -i $(LOCALES)/messages.pot -d $(LOCALES) --no-fuzzy-matching --ignore-obsolete

catalogs: venv ## compile the page's catalogs (.po to .mo)
	$(BABEL) -q compile -d $(LOCALES)

clean: ## remove caches and build output (keeps .venv and service data)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info test-artifacts
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean ## also remove .venv
	rm -rf $(VENV)

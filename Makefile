# The README's commands. Every target makes its own virtual environment on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
FLASK := $(BIN)/flask --app app
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: install checkers run serve test test-fast lint format bench bench-status bench-api bench-search bench-import bench-peers soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## checkers: the page checkers the tests run, the Nu HTML Checker (vnu.jar) and axe-core, into
## node_modules/ at the versions and checksums of package-lock.json. Without their install scripts:
## vnu-jar's would download a Java runtime, and the machine's own Java runs vnu.jar.
CHECKERS_STAMP := node_modules/.installed-stamp
$(CHECKERS_STAMP): package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund
	touch $(CHECKERS_STAMP)

checkers: $(CHECKERS_STAMP)

## run: the app on http://127.0.0.1:5000 with SQLite in instance/ and a demo resource
run: $(STAMP)
	$(FLASK) db upgrade
	$(FLASK) demo
	$(FLASK) run --host $(HOST) --port $(PORT)

## serve: the production topology of the Procfile with honcho, after `flask db upgrade`: gunicorn
## (WEB_CONCURRENCY workers) on HOST:PORT, OUTBOX_WORKERS outbox workers, one upkeep, against
## DATABASE_URL and RATELIMIT_STORAGE_URI (both required), mail delivered by the workers only.
WEB_CONCURRENCY ?= 2
OUTBOX_WORKERS ?= 2
PROMETHEUS_MULTIPROC_DIR ?= $(CURDIR)/instance/prometheus
serve: $(STAMP)
	@test -n "$$DATABASE_URL" || { echo "make serve: set DATABASE_URL (postgresql://...)" >&2; exit 2; }
	@test -n "$$RATELIMIT_STORAGE_URI" || { echo "make serve: set RATELIMIT_STORAGE_URI (redis://...)" >&2; exit 2; }
	@# prometheus_client's multiprocess files must not outlive the processes that wrote them.
	mkdir -p "$(PROMETHEUS_MULTIPROC_DIR)"
	PROMETHEUS_MULTIPROC_DIR="$(PROMETHEUS_MULTIPROC_DIR)" $(FLASK) db upgrade
	rm -f "$(PROMETHEUS_MULTIPROC_DIR)"/*.db
	PATH="$(CURDIR)/$(BIN):$$PATH" OUTBOX_DELIVER_INLINE=false \
		WEB_CONCURRENCY=$(WEB_CONCURRENCY) PROMETHEUS_MULTIPROC_DIR="$(PROMETHEUS_MULTIPROC_DIR)" \
		exec $(BIN)/honcho start --procfile Procfile --port $(PORT) --concurrency worker=$(OUTBOX_WORKERS)

## test: lint, then every test (SQLite; PostgreSQL too when TEST_DATABASE_URL is set), ending
## with the ten slowest tests and the suite's wall time
test: $(STAMP) lint
	$(BIN)/python -m pytest --durations=10 $(PYTEST_ARGS)

## test-fast: the loop to run while changing code: every test but those marked slow (a browser,
## 100,000 rows, schemathesis, real processes, thousands of examples); see the README
## TEST_WORKERS processes share the tests (pytest-xdist) on SQLite, each with its own database
## file; on TEST_DATABASE_URL they would share one database, so there the loop runs in one process.
TEST_WORKERS ?= 2
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" --durations=10 \
		$(if $(TEST_DATABASE_URL),,-n $(TEST_WORKERS)) $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/bandit --quiet --recursive app
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## bench: each figure the issues name beside its raw floor: the status model in process
## (bench/README.md), then the JSON API over HTTP (bench/API_BENCH.md), the admin's profile
## search (bench/admin_search.py) and a CSV import (bench/imports.py); bench-peers is separate
bench: bench-status bench-api bench-search bench-import

bench-status: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-api: $(STAMP)
	$(BIN)/python -m bench.http_api $(BENCH_ARGS)

bench-search: $(STAMP)
	$(BIN)/python -m bench.admin_search $(BENCH_ARGS)

## bench-import: a 1,000,000-row CSV imported, beside the raw executemany floor (bench/imports.py)
bench-import: $(STAMP)
	$(BIN)/python -m bench.imports $(BENCH_IMPORT_ARGS)

## bench-peers: optin beside django-newsletter (peer) and bare Flask (floor), over HTTP on 127.0.0.1,
## then a check that no signup was lost (see bench/peers/README.md). Needs ../shared/peers.
PEERS_DIR ?= ../shared/peers
bench-peers:
	TARGETS="peer bare optin" PEERS_TARGETS="$(CURDIR)/bench/peers" \
		PEERS_STATE="$(CURDIR)/.bench-state" $(PEERS_DIR)/bench.sh
	$(PYTHON) bench/peers/check_optin.py "$(CURDIR)/.bench-state/tmp"

## soak: the production topology (its own PostgreSQL, Redis, SMTP, gunicorn, 2 outbox workers)
## under SOAK_CLIENTS clients for SOAK_SECONDS, with a worker killed, the SMTP server down and
## PostgreSQL restarted; fails when anything is lost, duplicated beyond the kill, or answered 500
SOAK_CLIENTS ?= 16
SOAK_SECONDS ?= 90
soak: $(STAMP)
	$(BIN)/python -m bench.soak --clients $(SOAK_CLIENTS) --duration $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

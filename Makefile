# TIC: two commands on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
VENDOR := frontend/static/vendor
export TIC_HOST ?= 127.0.0.1
export TIC_PORT ?= 9985
export TIC_DATA_DIR ?= ./data

.PHONY: install assets migrate run test lint typecheck test-sqlite test-postgres test-quick system-deps bench clean

## install: create .venv if missing and install TIC with its dev tools into it
install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## assets: htmx and hls.js from the npm registry into frontend/static/vendor (never committed)
assets: $(VENDOR)/.stamp

$(VENDOR)/.stamp: frontend/package.json frontend/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the browser assets: apt-get install nodejs npm"; exit 1; }
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(VENDOR)
	cp frontend/node_modules/htmx.org/dist/htmx.min.js $(VENDOR)/htmx.min.js
	cp frontend/node_modules/hls.js/dist/hls.min.js $(VENDOR)/hls.min.js
	@touch $@

## migrate: bring the database schema up to date (the app also does this when it starts)
migrate: install
	$(BIN)/alembic -c migrations/alembic.ini upgrade heads

## run: install, fetch assets, migrate, and start TIC on http://$(TIC_HOST):$(TIC_PORT)
run: install assets migrate
	$(BIN)/python run.py

## system-deps: Debian packages the tests use (ffmpeg, PostgreSQL, Chromium, the XMLTV DTD); skips what is there
system-deps:
	@missing=""; \
	command -v ffmpeg >/dev/null && command -v ffprobe >/dev/null || missing="$$missing ffmpeg"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v psql >/dev/null || missing="$$missing postgresql-client"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v npm >/dev/null || missing="$$missing nodejs npm"; \
	test -f /usr/share/xmltv/xmltv.dtd || missing="$$missing xmltv-util"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

lint: install
	$(BIN)/ruff format --check backend tests bench run.py migrations/env.py
	$(BIN)/ruff check backend tests bench run.py migrations/env.py

typecheck: install
	$(BIN)/mypy

test-sqlite: install assets
	TIC_TEST_DB=sqlite $(BIN)/pytest -q

# The same database tests again on a throwaway PostgreSQL cluster that the fixtures start and remove.
test-postgres: install assets system-deps
	TIC_TEST_DB=postgres $(BIN)/pytest -q

## test: install what the tests need, then ruff, mypy and the suite on SQLite and on PostgreSQL
test: system-deps install assets lint typecheck test-sqlite test-postgres

## bench: the performance benchmarks (JSON + markdown in bench/results)
bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) frontend/node_modules $(VENDOR) .pytest_cache .mypy_cache .ruff_cache

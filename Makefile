# The two commands: `make run` (the whole platform on embedded defaults) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv when present, pip otherwise; both install the pinned requirements into .venv.
INSTALL = if command -v uv >/dev/null 2>&1; then uv pip install -q --python $(BIN)/python -r $(1); \
          else $(BIN)/python -m pip install -q --disable-pip-version-check -r $(1); fi

.PHONY: run test lint typecheck audit pytest bench clean

$(BIN)/python:
	@if command -v uv >/dev/null 2>&1; then uv venv -q $(VENV); else $(PYTHON) -m venv $(VENV); fi

$(VENV)/.installed: requirements.txt | $(BIN)/python
	@$(call INSTALL,requirements.txt)
	@touch $@

# The development environment also holds what bench/ compares with (mypy checks it too).
$(VENV)/.installed-dev: requirements.txt requirements-dev.txt bench/requirements.txt | $(BIN)/python
	@$(call INSTALL,bench/requirements.txt)
	@touch $@ $(VENV)/.installed

## run: web (uvicorn), Celery worker, beat and the provider sandbox in the foreground;
## Ctrl-C stops them all.
run: export DEBUG ?= true
run: export SWITCHBOARD_PORT ?= 8000
run: export PUBLIC_URL ?= http://127.0.0.1:$(SWITCHBOARD_PORT)
run: export SWITCHBOARD_SANDBOX_PORT ?= 8400
run: export SWITCHBOARD_SANDBOX_URL ?= http://127.0.0.1:$(SWITCHBOARD_SANDBOX_PORT)
run: $(VENV)/.installed
	@$(BIN)/python manage.py migrate --noinput -v0
	@$(BIN)/python manage.py collectstatic --noinput -v0
	@$(BIN)/python manage.py bootstrap_demo
	@$(BIN)/python manage.py runstack

## test: ruff, mypy, the dependency audit and the whole pytest suite, on PostgreSQL and Redis
## (local defaults below).
test: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/postgres
test: export REDIS_URL ?= redis://127.0.0.1:6379/9
test: $(VENV)/.installed-dev lint typecheck audit pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy .

## audit: the installed, pinned environment against known vulnerabilities (pip-audit's PyPI
## and OSV services); fails on one not explained in .pip-audit-ignore.toml, and names every
## distribution no source could answer for. AUDIT_REQUIRE_COMPLETE=1 fails on those too.
audit: $(VENV)/.installed-dev
	$(BIN)/python scripts/dependency_audit.py

pytest: $(VENV)/.installed-dev
	$(BIN)/pytest $(PYTEST_ARGS)

## bench: the benchmarks (not part of `make test`). Starts what each needs (PostgreSQL and
## Redis when down, web servers, workers, the sandbox), prints one table, writes
## bench/RESULTS.md. BENCH_ARGS="--only api --quick" narrows it.
bench: $(VENV)/.installed-dev
	@command -v wrk >/dev/null && command -v hey >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk hey)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache

# isoweb: `make run` starts the product on a local demo fleet; `make test` runs every test.
# Both set up whatever is missing first (system packages when run as root, the virtualenv, npm packages).
# Python packages come from the lock requirements.txt (exact versions and hashes, installed with
# --require-hashes); the direct dependencies and why each is there are in requirements.in.
# `make lock` regenerates the lock from requirements.in with pip-tools (kept in its own venv under var/),
# keeping every pin that still satisfies requirements.in; `make lock LOCK_ARGS=--upgrade` (or
# `LOCK_ARGS="--upgrade-package redis"`) moves pins forward. Commit requirements.in and requirements.txt together.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run test stop setup system-deps lint bench fleet-up fleet-down lock

LOCK_VENV := var/lockvenv
PIP_TOOLS := pip-tools==7.6.2

setup: system-deps .venv/.installed node_modules/.installed

system-deps:
	@bash scripts/system-deps.sh

.venv/.installed: requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes -r requirements.txt
	touch $@

lock: requirements.in
	test -x $(LOCK_VENV)/bin/pip-compile || { python3 -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet $(PIP_TOOLS); }
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
		--strip-extras --no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(LOCK_ARGS) \
		requirements.in -o requirements.txt

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: setup
	@bash scripts/run.sh

stop:
	@if [ -f var/honcho.pid ]; then kill "$$(cat var/honcho.pid)" 2>/dev/null || true; fi
	@sleep 1
	-@$(PY) manage.py fleet down
	@if [ -f var/redis.pid ]; then kill "$$(cat var/redis.pid)" 2>/dev/null || true; rm -f var/redis.pid; fi

lint: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy isoweb hosts

test: setup
	.venv/bin/ruff check .
	DJANGO_SETTINGS_MODULE=isoweb.settings_test $(PY) manage.py check
	DJANGO_SETTINGS_MODULE=isoweb.settings_test $(PY) manage.py makemigrations --check --dry-run
	.venv/bin/mypy isoweb hosts
	.venv/bin/pytest
	# The whole suite again on a private PostgreSQL server the tests start and stop (hosts/harness/postgres.py).
	ISOWEB_TEST_DB=postgres ISOWEB_ARTIFACTS=$(or $(ISOWEB_ARTIFACTS),artifacts)/postgres .venv/bin/pytest

bench: setup
	$(PY) bench/inventory.py
	$(PY) bench/apply.py
	$(PY) bench/stats.py
	$(PY) bench/browser.py
	$(PY) bench/faults.py
	$(PY) bench/scale.py
	$(PY) bench/drift.py

fleet-up: setup
	$(PY) manage.py fleet up --register

fleet-down:
	$(PY) manage.py fleet down

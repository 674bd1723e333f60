# isoweb: `make run` starts the product on a local demo fleet; `make test` runs every test.
# Both set up whatever is missing first (system packages when run as root, the virtualenv, npm packages).
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run test stop setup system-deps lint bench fleet-up fleet-down

setup: system-deps .venv/.installed node_modules/.installed

system-deps:
	@bash scripts/system-deps.sh

.venv/.installed: requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

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

bench: setup
	$(PY) bench/inventory.py
	$(PY) bench/apply.py
	$(PY) bench/stats.py
	$(PY) bench/browser.py

fleet-up: setup
	$(PY) manage.py fleet up --register

fleet-down:
	$(PY) manage.py fleet down

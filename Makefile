# The two commands of the README: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= demo-out
PYTEST_ARGS ?=

.PHONY: demo test lint setup setup-test services services-stop docker bench clean lock

# Every package at the version of constraints.txt (the lock): a new release of a dependency reaches
# the project only through `make lock`, never by surprise on a fresh machine.
$(BIN)/assemblage: pyproject.toml setup.py constraints.txt assemblage/corpus/export/_batches.c
	$(PYTHON) -m venv $(VENV) || (scripts/bootstrap.sh apt demo && $(PYTHON) -m venv $(VENV))
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[service,test]'
	touch $@

# Refresh the lock: install the newest versions pyproject.toml allows into a scratch environment,
# write their exact versions to constraints.txt, then reinstall .venv from it. Run `make test` next,
# and commit constraints.txt with the change that needed it.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q --upgrade pip
	$(LOCK_VENV)/bin/pip install -q -e '.[service,test]'
	$(LOCK_VENV)/bin/python scripts/lock.py --out constraints.txt
	rm -rf $(LOCK_VENV)
	$(MAKE) $(BIN)/assemblage

setup:
	scripts/bootstrap.sh apt demo
	$(MAKE) $(BIN)/assemblage

setup-test:
	scripts/bootstrap.sh apt test
	$(MAKE) $(BIN)/assemblage

demo: setup
	$(BIN)/assemblage build recipes/demo.yaml --out $(OUT) --allow-failures  # recipes/samples/broken fails on purpose

# A service that does not start fails `make test` in CI (CI=true); elsewhere its tests skip, saying why.
services:
	@scripts/services.sh start || { \
	  case "$${CI:-}" in true|TRUE|True|1|yes) echo "make: a service the tests need did not start (CI=$${CI}): stopping" >&2; exit 1 ;; esac; \
	  echo "make: continuing without it; its tests skip with the reason (with CI=true this fails)" >&2; }

services-stop:
	scripts/services.sh stop

# the Docker daemon, the Linux worker image and the service images of docker-compose.local.yml
# (built once, then from Docker's layer cache)
docker:
	scripts/docker.sh image compose-images

test: setup-test services docker lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff's lint and format ([tool.ruff] in pyproject.toml), then mypy on the package ([tool.mypy]): a finding or
# an unformatted file fails `make test` (`$(BIN)/ruff format .` formats the tree)
lint: $(BIN)/assemblage
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(OUT) .pytest_cache

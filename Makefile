# One entry point for humans and CI. `make run` starts the whole system on the
# embedded stack; `make test` runs every test tier. Both install what is missing.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GEN := gen
PROTOS := $(shell find protos -name '*.proto')
GEN_STAMP := $(GEN)/.generated

# The image installs requirements.lock (exact versions and file hashes); the development venv
# installs requirements-dev.txt constrained to the same versions, so the tests run what ships.
REQUIREMENTS := requirements.txt requirements-embedded.txt requirements-dev.txt requirements.lock
UV_VERSION := 0.13.9

.PHONY: run test test-unit test-integration test-e2e lint typecheck check bench bench-intake bench-routing bench-sla bench-classifier proto venv lock clean

run: $(GEN_STAMP)
	$(PY) -m services.stack

test: lint typecheck
	$(PY) -m pytest

test-unit: $(GEN_STAMP)
	$(PY) -m pytest tests/unit

test-integration: $(GEN_STAMP)
	$(PY) -m pytest tests/integration

test-e2e: $(GEN_STAMP)
	$(PY) -m pytest tests/e2e

lint: $(GEN_STAMP)
	$(VENV)/bin/ruff check services tests bench
	$(VENV)/bin/ruff format --check services tests bench

typecheck: $(GEN_STAMP)
	$(VENV)/bin/mypy

check: lint typecheck test

bench: bench-classifier bench-intake bench-routing bench-sla

bench-classifier: $(GEN_STAMP)
	$(PY) -m bench.classifier

bench-intake: $(GEN_STAMP)
	$(PY) -m bench.intake

bench-routing: $(GEN_STAMP)
	$(PY) -m bench.routing --db-per-service

bench-sla: $(GEN_STAMP)
	$(PY) -m bench.sla --open 1000000

venv: $(STAMP)

# requirements.lock's pins, without their hashes, constrain the install (with hashes pip
# would ask them of every development package too): the runtime packages get the image's
# versions, and their dependencies the same as in the image.
$(STAMP): $(REQUIREMENTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	sed -n 's/^\([A-Za-z0-9][A-Za-z0-9._-]*==[^ ;\\]*\).*/\1/p' requirements.lock > $(VENV)/lock-constraints.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -c $(VENV)/lock-constraints.txt -r requirements-dev.txt
	echo "$(CURDIR)" > $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/lapor.pth
	echo "$(CURDIR)/$(GEN)" >> $$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/lapor.pth
	printf '#!/bin/sh\nexec "%s/$(PY)" -m services.cli "$$@"\n' "$(CURDIR)" > $(VENV)/bin/lapor && chmod +x $(VENV)/bin/lapor
	touch $(STAMP)

proto: $(GEN_STAMP)

$(GEN_STAMP): $(STAMP) $(PROTOS)
	rm -rf $(GEN) && mkdir -p $(GEN)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -Iprotos --python_out=$(GEN) --grpc_python_out=$(GEN) --mypy_out=$(GEN) $(PROTOS)
	find $(GEN) -type d -exec touch {}/__init__.py \;
	rm -f $(GEN)/__init__.py
	touch $(GEN_STAMP)

# Regenerates requirements.lock from requirements.txt for the image (Python 3.11, Linux):
# every package with its dependencies, pinned, with the hashes of every file PyPI has for
# that version (so an arm64 build verifies too). Pins still allowed by requirements.txt are
# kept; to move them: `make lock LOCK_FLAGS=--upgrade` (all) or
# `make lock LOCK_FLAGS='--upgrade-package holidays'` (one). uv runs from a throwaway venv.
lock:
	tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT \
	&& $(PYTHON) -m venv "$$tmp/venv" \
	&& "$$tmp/venv/bin/pip" install --quiet --disable-pip-version-check uv==$(UV_VERSION) \
	&& "$$tmp/venv/bin/uv" pip compile requirements.txt --generate-hashes \
	   --python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	   --custom-compile-command "make lock" --quiet $(LOCK_FLAGS) --output-file requirements.lock

clean:
	rm -rf $(VENV) $(GEN) .pytest_cache .mypy_cache .ruff_cache

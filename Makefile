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

.PHONY: run test test-unit test-integration test-e2e lint typecheck check bench bench-intake bench-routing bench-sla bench-classifier proto venv clean

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

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
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

clean:
	rm -rf $(VENV) $(GEN) .pytest_cache .mypy_cache .ruff_cache

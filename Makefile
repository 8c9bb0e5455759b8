# reprolab: `make run` reproduces a paper end to end, `make test` runs the test suite.
# Both install everything into .venv first (from the committed lock, with uv).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV    := .venv
PY      := $(VENV)/bin/python
PAPER   ?= nm_sparsity
PROFILE ?= full
PYTHON  ?= python3
UV_VERSION := $(shell grep -m1 '^uv==' requirements.lock | cut -d= -f3)
# torch 2.13.0+cpu comes from the wheel on this machine's disk (PyPI's torch is a CUDA build).
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

export PATH := $(abspath $(VENV))/bin:$(PATH)
export DO_NOT_TRACK := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1

.PHONY: help install run papers test test-fast browser-deps repro dvc-yaml ui serve lock clean-store

help:  ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip sync -q --python $(PY) $(FIND_LINKS) requirements.lock
	@touch $@

install: $(VENV)/.installed  ## create .venv from requirements.lock (idempotent)

run: install  ## reproduce PAPER (default nm_sparsity; PAPER=all for every paper) with PROFILE=smoke|full
	$(PY) -m flows run --paper $(PAPER) --profile $(PROFILE)

papers: install  ## list the registered papers
	$(PY) -m tasks papers

test: install infra-deps browser-deps  ## install what the tests need (idempotent), then run the whole test suite
	$(PY) -m pytest -q --durations=30 tests

browser-deps:  ## Debian's chromium for the browser tests (apt, only when /usr/bin/chromium is missing)
	bash mk/browser-deps.sh

repro: install  ## run the same pipelines with DVC (full profile, outputs under artifacts/)
	$(VENV)/bin/dvc repro

dvc-yaml: install  ## regenerate dvc.yaml from the paper declarations
	$(PY) -m tasks dvc-yaml

ui: install  ## start the Prefect UI (:4200, this project's history) and the MLflow UI (:5000) on 127.0.0.1; Ctrl-C stops both
	@trap 'kill 0' EXIT INT TERM; \
	$(PY) -m flows.server --port 4200 & \
	$(VENV)/bin/mlflow ui --host 127.0.0.1 --port 5000 --backend-store-uri sqlite:///mlflow.db \
	  --default-artifact-root ./mlartifacts & \
	echo "Prefect UI: http://127.0.0.1:4200   MLflow UI: http://127.0.0.1:5000"; wait

serve: install  ## serve every paper flow as a nightly Prefect deployment (into `make ui`'s server or PREFECT_API_URL)
	$(PY) -m flows serve

lock:  ## re-resolve requirements.in into requirements.lock
	$(VENV)/bin/uv pip compile requirements.in -o requirements.lock --python-version 3.11 $(FIND_LINKS)

clean-store:  ## delete the local content-addressed store (forces recomputation)
	rm -rf .reprolab/store .reprolab/prefect-results

-include mk/*.mk

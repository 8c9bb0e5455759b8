# Served stack (issue #9): see docs/infra.md. Configuration: REPROLAB_* env vars or REPROLAB_PROFILE=<name>.
PY ?= .venv/bin/python
.PHONY: infra-deps stack-up stack-down stack-status stack-env stack-deploy bench-infra test-infra stack-dvc-remote

infra-deps:  ## PostgreSQL (apt) + s3rver (npm ci into infra/node_modules); skips what is present
	bash infra/install-deps.sh

stack-up: install infra-deps  ## start PostgreSQL, S3, MLflow, Prefect + worker on 127.0.0.1; prints UI addresses
	$(PY) -m infra.stack up

stack-down:  ## stop every stack process by PID
	$(PY) -m infra.stack down

stack-status:  ## PID + health probe per service (exit 1 if any is down)
	$(PY) -m infra.stack status

stack-env:  ## export lines for clients: eval "$$(make -s stack-env)"
	@$(PY) -m infra.stack env

stack-deploy: install  ## deploy every paper flow (nightly cron, editable parameters) to the work pool
	$(PY) -m infra.deploy

bench-infra: install infra-deps  ## Dask 1 vs 2 workers, served vs embedded per-task overhead -> benchmarks/results/infra.json
	$(PY) benchmarks/bench_infra.py

test-infra: install infra-deps  ## run tests/infra (starts its own stack on free loopback ports)
	$(PY) -m pytest tests/infra -q

stack-dvc-remote: install  ## point this repo's DVC at the stack's S3 store (.dvc/config.local)
	$(PY) -m infra.dvc_remote

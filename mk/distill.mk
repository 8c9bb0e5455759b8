# Distillation (issue #5): see docs/distillation.md.
PY ?= .venv/bin/python
.PHONY: bench-distill bench-gld test-distill

bench-distill:  ## distill task (Lightning) vs plain torch loop wall time -> benchmarks/results/distill.json
	MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 $(PY) benchmarks/bench_distill.py

bench-gld:  ## GLD sorting-based GW vs exact GW (POT, brute force): error + speed-up -> benchmarks/results/gld.json
	MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 $(PY) benchmarks/bench_gld.py

test-distill:
	$(PY) -m pytest tests/distill -q

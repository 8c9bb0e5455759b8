# N:M kernels (issue #3): benchmark and tests. BENCH_PROFILE=quick|full.
BENCH_PROFILE ?= quick

.PHONY: bench-kernels test-kernels
bench-kernels:
	DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true BENCH_PROFILE=$(BENCH_PROFILE) \
		$(PY) benchmarks/bench_kernels.py --profile $(BENCH_PROFILE)

test-kernels:
	$(PY) -m pytest tests/kernels -q

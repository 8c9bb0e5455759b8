# N:M kernels (issue #3) and low-bit kernels (issue #19): benchmarks and tests. BENCH_PROFILE=quick|full.
BENCH_PROFILE ?= quick

.PHONY: bench-kernels bench-quant-kernels test-kernels
bench-kernels: install bench-quant-kernels  ## N:M matmul vs dense (and bench-quant-kernels) per pattern/v/dtype/shape/batch -> benchmarks/results/ + MLflow (BENCH_PROFILE=quick|full)
	DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true BENCH_PROFILE=$(BENCH_PROFILE) \
		$(PY) benchmarks/bench_kernels.py --profile $(BENCH_PROFILE)

bench-quant-kernels: install  ## low-bit quant_matmul vs fp32 dense and torch's int8/int4 CPU paths, cache-cold and warm, 1 thread -> benchmarks/results/ + MLflow
	DO_NOT_TRACK=1 MLFLOW_DISABLE_TELEMETRY=true BENCH_PROFILE=$(BENCH_PROFILE) \
		$(PY) benchmarks/bench_quant.py --profile $(BENCH_PROFILE) --threads 1

test-kernels: install  ## the kernel tests (reference vs fast parity)
	$(PY) -m pytest tests/kernels -q

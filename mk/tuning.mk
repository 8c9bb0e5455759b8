# Fair comparisons (issue #17): see docs/contract.md "Fair comparisons". Included by the main Makefile.
PY ?= .venv/bin/python
TUNING_PROFILE ?= smoke
.PHONY: bench-tuning test-tuning

bench-tuning:  ## what equal-budget tuning adds per paper (5 KD + nm_sparsity) (TUNING_PROFILE=smoke|full) -> benchmarks/results/tuning_<profile>.json
	MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 $(PY) benchmarks/bench_tuning.py --profile $(TUNING_PROFILE)

test-tuning:  ## the tuning mechanism and its use in the KD papers and nm_sparsity
	$(PY) -m pytest -q tests/platform/test_tuning.py tests/distill/test_tuning_kd.py tests/papers/test_nm_sparsity.py

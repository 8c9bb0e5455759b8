# Fair comparisons (issue #17): see docs/contract.md "Fair comparisons". Included by the main Makefile.
PY ?= .venv/bin/python
TUNING_PROFILE ?= smoke
TUNING_PAPERS ?= logit_standardization,pld,dual_head_kd,negative_flips,infigfusion,nm_sparsity
TUNING_DASK_WORKERS ?= 0
.PHONY: bench-tuning test-tuning

bench-tuning:  ## what equal-budget tuning adds per paper, wall + CPU s (TUNING_PROFILE=smoke|full, TUNING_PAPERS=..., TUNING_DASK_WORKERS=N, TUNING_MERGE=1) -> benchmarks/results/tuning_<profile>.json + MLflow
	MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 $(PY) benchmarks/bench_tuning.py --profile $(TUNING_PROFILE) \
		--papers $(TUNING_PAPERS) --dask-workers $(TUNING_DASK_WORKERS) $(if $(TUNING_MERGE),--merge,)

test-tuning:  ## the tuning mechanism (in process and on Dask) and its use in the KD papers and nm_sparsity
	$(PY) -m pytest -q tests/platform/test_tuning.py tests/platform/test_tuning_dask.py tests/distill/test_tuning_kd.py tests/papers/test_nm_sparsity.py

# Post-training quantization papers (issue 14): lqer, spinquant, resq, boa. QUANT_PROFILE=smoke|full.
QUANT_PROFILE ?= full
.PHONY: bench-quant bench-quant-papers

bench-quant: bench-quant-papers  ## issue 14's benchmark, the same as bench-quant-papers (the kernel one is bench-quant-kernels)

bench-quant-papers: install  ## the four quantization papers' flows (shared tinylm trained once): wall/CPU per paper, stage and arm, quantization cost vs the 25 min goal -> benchmarks/results/quant_papers_<profile>.json + MLflow
	$(PY) benchmarks/bench_quant_papers.py --profile $(QUANT_PROFILE)

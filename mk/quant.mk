# Post-training quantization papers (issue 14): lqer, spinquant, resq, boa. QUANT_PROFILE=smoke|full.
QUANT_PROFILE ?= full
.PHONY: bench-quant-papers

bench-quant-papers: install  ## the four quantization papers' flows (shared tinylm trained once): wall/CPU per paper and stage, quantization cost vs the 25 min goal -> benchmarks/results/quant_papers_<profile>.json + MLflow
	$(PY) benchmarks/bench_quant_papers.py --profile $(QUANT_PROFILE)

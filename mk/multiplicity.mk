# Predictive multiplicity, uncertainty, calibration and IRT (issue 16): dropout_rashomon, predictive_churn, uncertainty_measures, oko, psn_irt.
.PHONY: multiplicity-smoke bench-multiplicity test-multiplicity

multiplicity-smoke: install  ## sampler micro-benchmark + the multiplicity pipelines on the smoke profile (timed)
	$(PY) benchmarks/bench_multiplicity.py --profile smoke

bench-multiplicity: install  ## seconds per epsilon-valid model per sampler + full-profile pipelines; JSON in benchmarks/results/ + MLflow
	$(PY) benchmarks/bench_multiplicity.py --profile full

test-multiplicity: install  ## the multiplicity tests (tests/multiplicity, tests/papers multiplicity papers)
	$(PY) -m pytest -q tests/multiplicity tests/papers/test_dropout_rashomon.py tests/papers/test_multiplicity_papers.py

# Data selection, label noise and active learning (issue 15): coreset_al, tacred_noise, gio, color_filter, weak_selection.
PY ?= .venv/bin/python
DATA_PROFILE ?= full
.PHONY: bench-data bench-data-papers test-data

bench-data: install  ## query time per selector vs pool size (1k/4k/20k) + incremental vs recompute k-center (4000 x 100) -> benchmarks/results/data_<profile>.json + MLflow
	$(PY) benchmarks/bench_data.py --profile $(DATA_PROFILE)

bench-data-papers: install  ## bench-data plus the wall time of the five data-selection flows (coreset_al, tacred_noise, gio, color_filter, weak_selection) (full profile: minutes)
	$(PY) benchmarks/bench_data.py --profile $(DATA_PROFILE) --papers

test-data: install  ## the data-selection tests (tests/data_selection, the five papers)
	$(PY) -m pytest -q tests/data_selection tests/papers/test_coreset_al.py tests/papers/test_tacred_noise.py tests/papers/test_data_selection_papers.py

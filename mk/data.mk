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

# Optional peers (issue 15, "Peers"): a separate venv, never the shared .venv nor CI's required set.
PEERS_VENV ?= .venv-peers
PEERS_PY   := $(PEERS_VENV)/bin/python
# uv from the project's venv (`make install` puts it there); the project venv itself is only read.
PEERS_UV   ?= $(VENV)/bin/uv
.PHONY: peers-env bench-data-peers

$(PEERS_VENV)/.installed: requirements.lock benchmarks/peers-requirements.txt
	@test -x $(PEERS_UV) || { echo "no $(PEERS_UV): run 'make install' first (or PEERS_UV=/path/to/uv)"; exit 1; }
	@test -x $(PEERS_PY) || $(PEERS_UV) venv -q --python $(PY) $(PEERS_VENV)
	$(PEERS_UV) pip sync -q --python $(PEERS_PY) $(FIND_LINKS) requirements.lock
	$(PEERS_UV) pip install -q --python $(PEERS_PY) $(FIND_LINKS) -c requirements.lock -r benchmarks/peers-requirements.txt
	@touch $@

peers-env: $(PEERS_VENV)/.installed  ## .venv-peers = requirements.lock + scikit-activeml, baal, cleanlab, data-selection (benchmarks/peers-requirements.txt; needs PyPI)

bench-data-peers: peers-env  ## our k-center / BALD / noise flaggers vs scikit-activeml, baal, cleanlab -> benchmarks/results/data_peers.json + MLflow; exits 1 if a parity check fails
	$(PEERS_PY) benchmarks/bench_data_peers.py --profile $(DATA_PROFILE)

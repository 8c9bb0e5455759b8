# Optional peer benchmark for issue 16 (multiplicity / uncertainty / calibration / IRT). Not part of `make test`:
# the peers live in their own venv (.venv-peers16) = the project's lock + the peer packages, never in .venv.
.PHONY: peers16-env bench-multiplicity-peers

PEERS16_VENV := .venv-peers16
PEERS16_PY   := $(PEERS16_VENV)/bin/python

$(PEERS16_VENV)/.installed: requirements.lock benchmarks/peers16-requirements.txt benchmarks/peers_env.sh | install
	bash benchmarks/peers_env.sh $(PEERS16_VENV) benchmarks/peers16-requirements.txt \
		'netcal, girth, py_irt.training, multiplicity, rashomon, treefarms'
	@touch $@

peers16-env: $(PEERS16_VENV)/.installed  ## separate venv .venv-peers16: the lock (girth included) + netcal, torch-uncertainty, py-irt, multiplicity, rashomon-py, treefarms (pinned)

bench-multiplicity-peers: peers16-env  ## our calibration/uncertainty/IRT/VPR values vs the peers'; JSON in benchmarks/results/ + MLflow
	$(PEERS16_PY) benchmarks/bench_multiplicity_peers.py

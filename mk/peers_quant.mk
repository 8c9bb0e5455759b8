# Optional peer benchmark for issue 14 (quantization: GPTQ / RTN / HQQ peers). Not part of `make test`: the peers live
# in their own venv (.venv-peers14) = the project's lock + the pinned peer packages, never in .venv.
.PHONY: peers14-env bench-quant-peers
QUANT_PEERS_PROFILE ?= full

PEERS14_VENV := .venv-peers14
PEERS14_PY   := $(PEERS14_VENV)/bin/python

$(PEERS14_VENV)/.installed: requirements.lock benchmarks/peers14-requirements.txt benchmarks/peers_env.sh | install
	bash benchmarks/peers_env.sh $(PEERS14_VENV) benchmarks/peers14-requirements.txt \
		'brevitas.graph.gptq, optimum.quanto, torchao, hqq.core.quantize, nncf'
	@touch $@

peers14-env: $(PEERS14_VENV)/.installed  ## separate venv .venv-peers14: the lock + brevitas, torchao, optimum-quanto, hqq, nncf (pinned, --no-deps)

bench-quant-peers: peers14-env  ## our GPTQ vs brevitas (fp64 parity), RTN vs torchao/quanto, HQQ W2-W4 on one tinylm -> benchmarks/results/quant_peers.json + MLflow; exits 1 if a parity check fails
	$(PEERS14_PY) benchmarks/bench_quant_peers.py --profile $(QUANT_PEERS_PROFILE)

# Evaluation targets (docs/evaluation.md). Included by the main Makefile.
.PHONY: test-evaluation compare

test-evaluation: install  ## run the evaluation tests (rliable, scoring, IRT, compare, report)
	$(PY) -m pytest -q tests/evaluation

compare: install  ## compare two runs: make compare RUN_A=/tmp/last_night RUN_B=artifacts/nm_sparsity
	@test -n "$(RUN_A)" -a -n "$(RUN_B)" || { echo "usage: make compare RUN_A=<dir> RUN_B=<dir>"; exit 2; }
	$(PY) -m tasks compare $(RUN_A) $(RUN_B)

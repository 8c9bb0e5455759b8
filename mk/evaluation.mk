# Evaluation targets (docs/evaluation.md). Included by the main Makefile.
.PHONY: test-evaluation compare

test-evaluation: install  ## run the evaluation tests (rliable, scoring, IRT, compare, report)
	$(PY) -m pytest -q tests/evaluation

compare: install  ## compare two runs: make compare RUN_A=nm_sparsity@previous RUN_B=nm_sparsity@latest (run ids, Prefect run names, dirs)
	@test -n "$(RUN_A)" -a -n "$(RUN_B)" || { echo "usage: make compare RUN_A=<run id, Prefect run name, paper@previous or dir> RUN_B=<...>"; exit 2; }
	$(PY) -m tasks compare $(RUN_A) $(RUN_B)

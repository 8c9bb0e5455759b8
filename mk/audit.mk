# Auditing stage (issue #8): membership inference, DP auditing, text detection.
.PHONY: audit-smoke bench-audit test-audit

audit-smoke: install  ## run the three auditing pipelines on the smoke profile in one process (timed)
	$(PY) benchmarks/bench_audit.py --profile smoke

bench-audit: install  ## full-profile auditing pipelines (LiRA with 16 shadows on digits, ...); JSON in benchmarks/results/
	$(PY) benchmarks/bench_audit.py --profile full

test-audit: install  ## the auditing tests (tests/audit)
	$(PY) -m pytest tests/audit -q

"""Statistics every report uses: bootstrap CIs and aggregates (rliable), IRT, calibration, seed
intervals and paired comparisons (seeds), run-to-run comparison (compare). Knows no paper.
"""

"""Predictive multiplicity and uncertainty science: model zoo (zoo), Rashomon-set samplers
(sampler), multiplicity metrics (metrics), uncertainty measures (uncertainty), the OKO set loss
(oko) and PSN-IRT (psn_irt). Knows no pruning, distillation or auditing.
"""

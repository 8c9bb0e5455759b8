"""Knowledge distillation: the distill core (distill), study arms and the KD papers' shared
params/report helpers (arms, kd_report), and the loss registry package (losses).
"""

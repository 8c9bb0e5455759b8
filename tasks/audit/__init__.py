"""Auditing science: membership-inference attacks (mia), shadow-model toolkit (shadows), DP auditing
(dp, dpsgd) and text-detection statistics (text_detect). Knows no pruning or distillation.
"""

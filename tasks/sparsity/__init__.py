"""N:M pruning science: patterns and variants, prune, fine-tune, evaluate (nm), serving (serving).
"""

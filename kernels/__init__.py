"""Compute kernels for reprolab (N:M sparse matmul in :mod:`kernels.nm`)."""

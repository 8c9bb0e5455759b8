"""Prefect flows over the task shell: one flow per registered paper, plus serving."""

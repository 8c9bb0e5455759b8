"""One module per paper, named as in ``flows/papers/``: what that paper alone computes.

``tasks/papers/<paper>.py`` holds the paper's report core, its one-paper stage cores and their
params. It may import any shared layer (platform, data, train, evaluation and the domains), never
another paper's module; the stage cache keys and ``dvc.yaml`` deps of a paper cover the shared
layers plus its own two modules only (``tasks.platform.stage.code_paths``).
"""

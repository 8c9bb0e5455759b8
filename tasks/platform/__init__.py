"""The platform: what knows no science and no Prefect (errors, params, artifacts IO, the stage
shell and store, tracking, reports, dvc.yaml generation). Every other layer builds on it."""

"""reprolab's served stack: PostgreSQL, an S3-compatible store, MLflow and Prefect servers.

The embedded defaults (local Prefect, MLflow on SQLite, DVC local cache) stay the one-command
path; this package adds the served path a lab uses when one machine is not enough. Everything
here is switched by configuration (environment variables or ``infra/profiles/<name>.env``).
"""

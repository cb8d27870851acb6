"""Thin Prefect ``@task`` adapters over ``pipelines.stages``: retries, timeouts, caching, logs."""

"""Prefect flows: ``train-and-evaluate`` and its run report."""

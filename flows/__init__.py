"""Prefect flows: thin orchestration of adapter and store calls."""

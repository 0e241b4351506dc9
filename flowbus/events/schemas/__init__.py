"""Prefect's ``prefect.events.schemas``: the deployment triggers' module."""

"""Prefect flows: what happens over time and across partners. Flows orchestrate; tracker decides."""

"""Realistic demo data for every role and stage."""

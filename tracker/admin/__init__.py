"""Organisations, users and signing in."""

"""The system of record for the Welcome Office onboarding tracker."""

__version__ = "0.1.0"

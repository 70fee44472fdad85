"""The `onboarding` command: one module per command group."""

"""Whether the suite runs in CI, where a missing PostgreSQL or browser is a failure, not a skip."""

from __future__ import annotations

import os

# Values that CI systems and people use to say "not CI"; anything else that is set means CI.
_NOT_CI = {"", "0", "false", "no", "off"}


def in_ci(environ: dict[str, str] | None = None) -> bool:
    value = (os.environ if environ is None else environ).get("CI", "")
    return value.strip().lower() not in _NOT_CI


IN_CI = in_ci()

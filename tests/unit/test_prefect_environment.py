"""Prefect reads its settings once, when first imported: whichever of the tracker's Prefect calls
comes first in a process, the client it builds talks to the tracker's Prefect server, never to a
throwaway in-process one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

FIRST_CALLS = {
    "forget_case_runs": "orchestration.forget_case_runs('WO-AAAA-BBBB')",
    "close_stale_advance_runs": "orchestration.close_stale_advance_runs()",
    "request_advance": "orchestration.queue_advance('WO-AAAA-BBBB')",
}


@pytest.mark.parametrize("first", list(FIRST_CALLS))
def test_the_first_prefect_call_in_a_process_uses_the_trackers_prefect_server(first, tmp_path):
    tracker_api = "http://127.0.0.1:9/api"  # nothing listens there
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and not k.startswith("ONBOARDING_")
    }
    env.update(
        {
            "ONBOARDING_PREFECT_API_URL": tracker_api,
            "ONBOARDING_ORCHESTRATION": "prefect",
            "ONBOARDING_DATA_DIR": str(tmp_path),
            "ONBOARDING_DATABASE_URL": f"sqlite:///{tmp_path / 'none.db'}",
            "DO_NOT_TRACK": "1",
        }
    )
    script = (
        "import sys\n"
        "from tracker.journeys import orchestration\n"
        "assert 'prefect' not in sys.modules\n"
        f"try:\n    {FIRST_CALLS[first]}\nexcept Exception as exc:\n"
        "    print('raised', type(exc).__name__, file=sys.stderr)\n"
        "from prefect.settings import get_current_settings\n"
        "print(get_current_settings().api.url)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == tracker_api, done.stdout + done.stderr

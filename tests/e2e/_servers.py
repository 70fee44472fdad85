"""What the end-to-end tests that start servers share: a free port and waiting for readiness."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T], timeout: float, what: str, *, interval: float = 0.5) -> T:
    """Call ``check`` every ``interval`` seconds until it is true and return what it returned;
    a refused connection counts as no."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if found := check():
                return found
        except httpx.HTTPError:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def inherited_environ() -> dict[str, str]:
    """This process's environment without Prefect's settings, for the servers a test starts.

    The session's Prefect test harness (tests/conftest.py) puts its own settings into
    os.environ, among them a server with the task run recorder switched off; a server started
    with those would never record a task run as finished. Each test names the settings it wants."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}

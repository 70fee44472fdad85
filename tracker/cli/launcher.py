"""`onboarding run`: start the local Prefect server, the flow-serving process (and the dashboard),
watch them, and stop them all together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlparse

from tracker.admin.auth import ProductionNotReady, check_production
from tracker.config import PROJECT_ROOT, Settings, get_settings, prefect_environment
from tracker.journeys.orchestration import prefect_reachable

BIN = Path(sys.executable).parent


@dataclass
class Service:
    name: str
    command: list[str]
    url: str | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)


def child_environment(settings: Settings | None = None) -> dict[str, str]:
    """The environment every child process gets: local, quiet, nothing phones home."""
    settings = settings or get_settings()
    env = dict(os.environ)
    env.update(prefect_environment(settings))
    api = urlparse(settings.prefect_api_url)
    # A server this launcher starts listens on loopback only, whatever the URL says: its UI
    # shows case references and has no sign-in.
    env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
    env["PREFECT_SERVER_API_PORT"] = str(api.port or 4200)
    env.setdefault("ONBOARDING_DATA_DIR", str(settings.data_dir))
    Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    return env


def plan_services(settings: Settings, *, start_server: bool, with_dashboard: bool) -> list[Service]:
    api = urlparse(settings.prefect_api_url)
    host, port = "127.0.0.1", api.port or 4200
    services = []
    if start_server:
        services.append(
            Service(
                "prefect-server",
                [str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port)],
                url=f"http://{host}:{port}",
            )
        )
    services.append(Service("flows", [str(BIN / "onboarding-flows"), "serve"]))
    dashboard = PROJECT_ROOT / "dashboard" / "app.py"
    if with_dashboard and dashboard.exists():
        services.append(
            Service(
                "dashboard",
                [
                    str(BIN / "streamlit"),
                    "run",
                    str(dashboard),
                    "--server.address",
                    "127.0.0.1",
                    "--server.port",
                    str(settings.dashboard_port),
                    "--server.headless",
                    "true",
                    "--browser.gatherUsageStats",
                    "false",
                ],
                url=f"http://127.0.0.1:{settings.dashboard_port}",
            )
        )
    return services


def server_log(settings: Settings) -> Path:
    return settings.data_dir / "logs" / "prefect-server.log"


def _output(service: Service, settings: Settings) -> BinaryIO | None:
    """The Prefect server's banner and access lines go to a log file (its own "Check out the
    dashboard" line would stand next to ours); the other children keep the terminal."""
    if service.name != "prefect-server":
        return None
    path = server_log(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return False


def stop(services: list[Service], grace: float = 15) -> None:
    """Stop the services in the reverse order of their start, each before the next: the flows
    process finishes the advances it holds and leaves Prefect while the server still answers."""
    for service in reversed(services):
        process = service.process
        if process is None or process.poll() is not None:
            continue
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)


def run(
    *,
    say: Callable[[str], None],
    with_dashboard: bool = True,
    settings: Settings | None = None,
) -> int:
    """Start everything, print where it is, and supervise until Ctrl-C or a child dies.

    In production nothing starts without a proper secret or with demo sign-ins (exit 2)."""
    settings = settings or get_settings()
    try:
        check_production(settings)
    except ProductionNotReady as exc:
        say(f"Refusing to start: {exc}")
        return 2
    env = child_environment(settings)
    start_server = not prefect_reachable(settings.prefect_api_url, timeout=1)
    services = plan_services(settings, start_server=start_server, with_dashboard=with_dashboard)
    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for service in services:
            say(f"starting {service.name} …")
            # Each child in a process group of its own: Ctrl-C in the terminal reaches only
            # this launcher, which stops the children one after the other (the server last)
            # instead of all at once, when the flows process would lose the server mid-goodbye.
            log = _output(service, settings)
            service.process = subprocess.Popen(
                service.command,
                env=env,
                process_group=0,
                stdout=log,
                stderr=subprocess.STDOUT if log else None,
            )
            if service.name == "prefect-server" and not wait_until(
                lambda: (
                    prefect_reachable(settings.prefect_api_url, timeout=1)
                    or (services[0].process is not None and services[0].process.poll() is not None)
                ),
                timeout=180,
            ):
                say(
                    "The Prefect server did not come up within 3 minutes; "
                    f"see {server_log(settings)}."
                )
                return 1
            if service.name == "prefect-server" and service.process.poll() is not None:
                say(f"The Prefect server stopped while starting; see {server_log(settings)}.")
                return 1
        say("")
        if not start_server:
            say(f"Using the Prefect server that is already running at {settings.prefect_api_url}")
        for service in services:
            if service.url:
                say(f"{service.name:15s} {service.url}")
        if start_server:
            say(f"{'prefect log':15s} {server_log(settings)}")
        say("Press Ctrl-C to stop.")
        while not stopping:
            for service in services:
                if service.process and service.process.poll() is not None:
                    say(
                        f"{service.name} stopped (exit {service.process.returncode}); stopping all."
                    )
                    return service.process.returncode or 1
            time.sleep(1)
        return 0
    finally:
        say("stopping …")
        stop(services)
        for sig, handler in previous.items():
            signal.signal(sig, handler)

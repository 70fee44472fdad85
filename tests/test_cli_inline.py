"""With ONBOARDING_ORCHESTRATION=inline there is no Prefect: no command contacts it or talks
about it. A listener on the configured Prefect address counts every connection attempt."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest

from tracker.config import get_settings


class Listener:
    """A socket where Prefect would be: it accepts, counts and hangs up."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def prefect_address(cli, monkeypatch: pytest.MonkeyPatch) -> Iterator[Listener]:
    listener = Listener()
    api = f"http://127.0.0.1:{listener.port}/api"
    monkeypatch.setenv("ONBOARDING_PREFECT_API_URL", api)
    monkeypatch.setenv("PREFECT_API_URL", api)
    get_settings.cache_clear()
    assert get_settings().orchestration == "inline"
    yield listener
    listener.close()
    get_settings.cache_clear()


def ok(cli, *args: str) -> str:
    code, out, err = cli(*args)
    assert code == 0, err or out
    assert "prefect" not in (out + err).lower(), args
    return out


def test_erasure_in_inline_mode_neither_calls_nor_mentions_prefect(cli, prefect_address):
    made = ok(
        cli, "newcomer", "add", "--as", "cm.mueller", "--given-name", "Ines",
        "--family-name", "Costa", "--nationality", "PT", "--json",
    )  # fmt: skip
    ref = json.loads(made)["reference"]
    ok(cli, "step", "complete", ref, "housing", "--as", "cm.mueller")
    out = ok(cli, "erase", ref, "--confirm", ref, "--as", "admin")
    assert f"Erased {ref}" in out
    out = ok(cli, "erasures", ref, "--forget-runs", "--as", "admin")
    assert "Tombstone" in out
    assert prefect_address.connections == 0


def test_no_other_command_reaches_prefect_in_inline_mode(cli, prefect_address, tmp_path):
    made = ok(
        cli, "newcomer", "add", "--as", "cm.mueller", "--given-name", "Jonas",
        "--family-name", "Berg", "--nationality", "SE", "--json",
    )  # fmt: skip
    ref = json.loads(made)["reference"]
    csv = tmp_path / "people.csv"
    csv.write_text(
        "given_name,family_name,birth_date,nationality\nAda,Lind,1990-03-04,SE\n",
        encoding="utf-8",
    )
    for args in [
        ("status",),
        ("case", "show", ref, "--as", "cm.mueller"),
        ("case", "advance", ref, "--as", "cm.mueller"),
        ("step", "complete", ref, "housing", "--as", "cm.mueller"),
        ("consent", "give", ref, "stadt-bochum", "--as", "cm.mueller"),
        ("import", str(csv), "--as", "cm.mueller"),
        ("retention", "--as", "admin"),
        ("case", "cancel", ref, "-r", "moved away", "--as", "cm.mueller"),
    ]:
        ok(cli, *args)
    assert prefect_address.connections == 0

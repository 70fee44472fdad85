"""Ways to hand a rendered message to the outside world: a file drop now, SMTP later."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from tracker.config import Settings, get_settings


@dataclass(frozen=True)
class Outgoing:
    """One claimed outbox message, addressed and rendered, ready to send."""

    id: int
    idempotency_key: str
    kind: str
    to_address: str
    language: str
    subject: str
    body: str


class DeliveryError(Exception):
    """Sending failed. ``permanent`` says a retry cannot help (e.g. the address is rejected)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


@runtime_checkable
class Sender(Protocol):
    """Delivers one message or raises; must be safe to call twice for the same message."""

    def send(self, message: Outgoing) -> None: ...


def file_name_for(idempotency_key: str) -> str:
    """The drop file's name: a hash, so keys never become paths and one key is one file."""
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32] + ".json"


class FileSender:
    """Writes each message as one JSON file into a folder: the mail drop for local runs and tests.

    The file is named by the message's idempotency key, so delivering a message again (after a
    crash between sending and marking it sent) finds the file already there and adds no copy.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path_for(self, message: Outgoing) -> Path:
        return self.folder / file_name_for(message.idempotency_key)

    def send(self, message: Outgoing) -> None:
        target = self.path_for(message)
        payload = {
            "to": message.to_address,
            "subject": message.subject,
            "body": message.body,
            "kind": message.kind,
            "key": message.idempotency_key,
            "language": message.language,
            "created": datetime.now(UTC).isoformat(),
        }
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if target.exists():
                return  # delivered before; the first copy stands
            # Write aside and rename: a reader (or a crash) never sees half a message.
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as fh:
                    json.dump(payload, fh, ensure_ascii=False, indent=2)
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            raise DeliveryError(f"could not write {target.name}: {exc}") from exc


def default_sender(settings: Settings | None = None) -> Sender:
    """The sender configured for this installation (the file drop until SMTP is configured)."""
    settings = settings or get_settings()
    # An SMTP sender slots in here, chosen by its settings, behind the same Sender protocol.
    return FileSender(settings.mail_dir or settings.data_dir / "mail")

"""Status and role vocabularies, stored as lowercase strings."""

from enum import StrEnum


class Role(StrEnum):
    case_manager = "case_manager"
    partner_agent = "partner_agent"
    leadership = "leadership"
    admin = "admin"


class OrgKind(StrEnum):
    core = "core"  # under the Welcome Office roof
    network = "network"  # network partners with their own queue
    external = "external"  # on the path, but not working in the tracker


class Purpose(StrEnum):
    work = "work"
    study = "study"


class Profile(StrEnum):
    skilled_worker = "skilled_worker"
    student = "student"
    eu_citizen = "eu_citizen"


class CaseStatus(StrEnum):
    open = "open"
    closed = "closed"
    cancelled = "cancelled"


class StepState(StrEnum):
    pending = "pending"
    open = "open"
    in_progress = "in_progress"
    blocked = "blocked"
    done = "done"
    skipped = "skipped"


FINISHED_STEP_STATES = frozenset({StepState.done, StepState.skipped})
ACTIVE_STEP_STATES = frozenset({StepState.open, StepState.in_progress, StepState.blocked})


class HandoffState(StrEnum):
    held = "held"  # waiting for the newcomer's consent to share with the organisation
    offered = "offered"
    accepted = "accepted"
    declined = "declined"
    returned = "returned"
    completed = "completed"
    withdrawn = "withdrawn"  # the step was skipped or completed elsewhere


ACTIVE_HANDOFF_STATES = frozenset({HandoffState.held, HandoffState.offered, HandoffState.accepted})


class ConsentMethod(StrEnum):
    signed_form = "signed_form"
    online_form = "online_form"
    email = "email"
    verbal_documented = "verbal_documented"


class OutboxStatus(StrEnum):
    pending = "pending"
    sending = "sending"
    sent = "sent"
    failed = "failed"


class DueStatus(StrEnum):
    none = "none"
    on_track = "on_track"
    due_soon = "due_soon"
    overdue = "overdue"

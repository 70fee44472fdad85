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


# --- FIT@THGA ---------------------------------------------------------------------------------


class FitChannel(StrEnum):
    """How a student came into the programme."""

    orientation_week = "orientation_week"
    international_office = "international_office"
    lecturer = "lecturer"
    fellow_student = "fellow_student"
    welcome_office = "welcome_office"
    social_media = "social_media"
    other = "other"


class FitStatus(StrEnum):
    enrolled = "enrolled"  # studying and in the programme: may register for offers
    graduated = "graduated"
    dropped_out = "dropped_out"  # left university without a degree
    withdrawn = "withdrawn"  # left the programme, still studying


class OfferKind(StrEnum):
    application_training = "application_training"
    salary_training = "salary_training"
    work_culture_seminar = "work_culture_seminar"
    excursion = "excursion"  # excursions and company visits
    job_fair = "job_fair"
    working_student_placement = "working_student_placement"


class OfferStatus(StrEnum):
    planned = "planned"
    held = "held"
    cancelled = "cancelled"


class RegistrationStatus(StrEnum):
    registered = "registered"  # has a place
    waitlisted = "waitlisted"
    cancelled = "cancelled"
    attended = "attended"
    no_show = "no_show"


# Registrations that hold one of an offer's places.
PLACE_HOLDING = frozenset(
    {RegistrationStatus.registered, RegistrationStatus.attended, RegistrationStatus.no_show}
)


class JobKind(StrEnum):
    working_student = "working_student"
    voluntary_internship = "voluntary_internship"
    mandatory_internship = "mandatory_internship"  # required by the study regulations
    university_assistant = "university_assistant"  # studentische/wissenschaftliche Hilfskraft
    other = "other"


# §16b(3) AufenthG: these do not count against the 140 full / 280 half days a year.
JOBS_NOT_COUNTED = frozenset({JobKind.mandatory_internship, JobKind.university_assistant})


class ContactKind(StrEnum):
    company_visit = "company_visit"
    job_fair_talk = "job_fair_talk"
    application = "application"
    interview = "interview"
    mentoring = "mentoring"
    other = "other"


class PermitKind(StrEnum):
    student = "student"  # §16b AufenthG
    job_search = "job_search"  # §20 AufenthG, up to 18 months after graduation
    work = "work"  # §18b AufenthG or EU Blue Card §18g

"""The tables of the system of record (SQLAlchemy 2.x typed mappings)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    event,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from tracker.enums import (
    CaseStatus,
    ConsentMethod,
    ContactKind,
    FitChannel,
    FitStatus,
    HandoffState,
    JobKind,
    OfferKind,
    OfferStatus,
    OrgKind,
    OutboxStatus,
    PermitKind,
    Purpose,
    RegistrationStatus,
    Role,
    StepState,
)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored as UTC and always returned timezone-aware, on SQLite too."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


def _enum(enum_cls: type) -> String:
    # Enums are stored as plain strings: adding a member never needs a migration.
    return String(max(len(m.value) for m in enum_cls) + 8)  # type: ignore[attr-defined]


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[OrgKind] = mapped_column(_enum(OrgKind))
    receives_handoffs: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    email: Mapped[str | None] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(_enum(Role))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]
    # Repeated failed sign-ins lock the account for a while (see tracker.admin.auth).
    failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None]
    last_login_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    organisation: Mapped[Organisation | None] = relationship()

    __mapper_args__ = {"version_id_col": version}
    # Screens name staff by display name: every account has one (migration 0008).
    __table_args__ = (CheckConstraint("length(trim(display_name)) > 0", name="display_name_given"),)


class Newcomer(Base):
    __tablename__ = "newcomers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    given_name: Mapped[str] = mapped_column(String(200))
    family_name: Mapped[str] = mapped_column(String(200))
    birth_date: Mapped[date | None] = mapped_column(Date)
    nationality: Mapped[str | None] = mapped_column(String(2))  # ISO 3166-1 alpha-2
    eu_citizen: Mapped[bool] = mapped_column(Boolean)
    purpose: Mapped[Purpose] = mapped_column(_enum(Purpose))
    accelerated_procedure: Mapped[bool] = mapped_column(Boolean, default=False)
    email: Mapped[str | None] = mapped_column(String(200))
    phone: Mapped[str | None] = mapped_column(String(50))
    preferred_language: Mapped[str] = mapped_column(String(8), default="de")
    first_contact_date: Mapped[date | None] = mapped_column(Date)
    arrival_date: Mapped[date | None] = mapped_column(Date)
    move_in_date: Mapped[date | None] = mapped_column(Date)
    permit_expiry: Mapped[date | None] = mapped_column(Date)
    # Lower-cased "family|given|birth" used to flag likely duplicates on import.
    match_key: Mapped[str] = mapped_column(String(420), index=True)
    created_at: Mapped[datetime]
    # Set when the retention run has removed everything that names the person; the row
    # stays only so that the anonymous statistics of their closed cases stay right.
    anonymised_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    cases: Mapped[list[Case]] = relationship(back_populates="newcomer")

    __mapper_args__ = {"version_id_col": version}


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(20), unique=True)
    newcomer_id: Mapped[int] = mapped_column(ForeignKey("newcomers.id"), index=True)
    pathway_key: Mapped[str] = mapped_column(String(40))
    pathway_version: Mapped[int] = mapped_column(Integer)
    case_manager_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    status: Mapped[CaseStatus] = mapped_column(_enum(CaseStatus), default=CaseStatus.open)
    opened_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    # The earliest due date of an active step, kept by the services whenever a clock moves,
    # so lists sort by urgency from an index instead of aggregating every step.
    next_due: Mapped[date | None] = mapped_column(Date)
    # Set by a change that may unlock steps, cleared once the case has been advanced; the
    # clock sweep advances cases whose request is older than a grace period (Prefect was down).
    advance_requested_at: Mapped[datetime | None]
    version: Mapped[int] = mapped_column(Integer, default=1)

    newcomer: Mapped[Newcomer] = relationship(back_populates="cases")
    case_manager: Mapped[User | None] = relationship()
    steps: Mapped[list[Step]] = relationship(
        back_populates="case", order_by="Step.position", cascade="all, delete-orphan"
    )

    __table_args__ = (
        Index("ix_cases_manager_status_due", "case_manager_id", "status", "next_due"),
        Index("ix_cases_status_due", "status", "next_due"),
        # Covers the leadership figures' scans of a year's cases (tracker.reporting).
        Index("ix_cases_status_opened", "status", "opened_at", "pathway_key", "newcomer_id"),
        Index("ix_cases_status_closed", "status", "closed_at"),
        Index("ix_cases_advance_requested", "advance_requested_at"),
    )
    __mapper_args__ = {"version_id_col": version}


class Step(Base):
    __tablename__ = "steps"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    key: Mapped[str] = mapped_column(String(40))
    position: Mapped[int] = mapped_column(Integer)
    # Snapshot of the pathway at case opening: the case never depends on a later file.
    needs: Mapped[list[str]] = mapped_column(JSON, default=list)
    owner_org_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    state: Mapped[StepState] = mapped_column(_enum(StepState), default=StepState.pending)
    opened_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    done_at: Mapped[datetime | None]
    service_days: Mapped[int | None] = mapped_column(Integer)
    legal_basis: Mapped[str | None] = mapped_column(String(40))
    legal_days: Mapped[int | None] = mapped_column(Integer)
    legal_months: Mapped[int | None] = mapped_column(Integer)
    # When a clock with basis "started" began: the last (re)start with a complete file.
    clock_started_at: Mapped[datetime | None]
    legal_reference: Mapped[str | None] = mapped_column(String(120))
    service_due: Mapped[date | None] = mapped_column(Date)
    legal_due: Mapped[date | None] = mapped_column(Date)
    due_date: Mapped[date | None] = mapped_column(Date)  # the earlier of the two, for sorting
    blocked_reason: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer, default=1)

    case: Mapped[Case] = relationship(back_populates="steps")
    owner: Mapped[Organisation] = relationship()
    handoffs: Mapped[list[Handoff]] = relationship(
        back_populates="step", order_by="Handoff.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        UniqueConstraint("case_id", "key", name="uq_steps_case_key"),
        Index("ix_steps_state_due", "state", "due_date"),
        # Per-case step lookups, and covering for the funnel and legal-clock figures.
        Index(
            "ix_steps_case_key_cover", "case_id", "key", "state", "outcome", "done_at", "legal_due"
        ),
        # A step's state across cases, and the steps of one key finished in a period: the
        # FIT@THGA enrolments of a year without reading every step done in it (leadership).
        Index("ix_steps_key_state_done", "key", "state", "done_at", "case_id"),
        # Steps finished in a period (the monthly report).
        Index("ix_steps_state_done", "state", "done_at"),
    )
    __mapper_args__ = {"version_id_col": version}


class Handoff(Base):
    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("steps.id"), index=True)
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    state: Mapped[HandoffState] = mapped_column(_enum(HandoffState))
    hold_reason: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)  # why declined, returned or withdrawn
    created_at: Mapped[datetime]
    offered_at: Mapped[datetime | None]
    accepted_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]  # completed, declined, returned or withdrawn
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    accepted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    # A copy of the step's due date, for ordering a partner's queue without reading each step.
    # The database keeps it (triggers of migration 0007: set on insert, and whenever the step's
    # due date changes); the application never writes it.
    step_due_date: Mapped[date | None] = mapped_column(
        Date, server_default=FetchedValue(), server_onupdate=FetchedValue()
    )

    step: Mapped[Step] = relationship(back_populates="handoffs")
    case: Mapped[Case] = relationship()
    organisation: Mapped[Organisation] = relationship()

    __table_args__ = (
        # A partner's queue and backlog: covering, so a page is chosen from the index alone, in
        # order of urgency, and only its fifty rows are read in full.
        Index(
            "ix_handoffs_org_state_due",
            "organisation_id",
            "state",
            "step_due_date",
            "offered_at",
            "id",
            "step_id",
            "case_id",
            "created_at",
        ),
        # Handoffs in a state whatever the organisation: the few sent back or held, for a case
        # manager's inbox.
        Index("ix_handoffs_state_step", "state", "step_id"),
        # Handoffs completed lately, per organisation, against their due date (the partners'
        # on-time share): covering.
        Index("ix_handoffs_state_closed", "state", "closed_at", "organisation_id", "step_due_date"),
        # Handoffs offered or closed in a period (the monthly report).
        Index("ix_handoffs_offered", "offered_at"),
        Index("ix_handoffs_closed", "closed_at"),
    )
    __mapper_args__ = {"version_id_col": version}


class Consent(Base):
    """One grant of consent to share a newcomer's case with one organisation."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    newcomer_id: Mapped[int] = mapped_column(ForeignKey("newcomers.id"))
    organisation_id: Mapped[int] = mapped_column(ForeignKey("organisations.id"))
    purpose: Mapped[str] = mapped_column(String(40), default="case_sharing")
    method: Mapped[ConsentMethod] = mapped_column(_enum(ConsentMethod))
    notice_language: Mapped[str] = mapped_column(String(8))
    given_at: Mapped[datetime]
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    revoked_at: Mapped[datetime | None]
    revoked_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    version: Mapped[int] = mapped_column(Integer, default=1)

    organisation: Mapped[Organisation] = relationship()

    __table_args__ = (Index("ix_consents_newcomer_org", "newcomer_id", "organisation_id"),)
    __mapper_args__ = {"version_id_col": version}


class AuditEvent(Base):
    """Append-only record of every change: who, what, when, why. Holds no names."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime]
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor: Mapped[str] = mapped_column(String(80))  # username or "system:<job>"
    action: Mapped[str] = mapped_column(String(60))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    entity_type: Mapped[str] = mapped_column(String(30))
    entity_id: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        Index("ix_audit_case_time", "case_id", "occurred_at"),
        # Events about a person before any case existed (erasure and the Art. 15 export).
        Index("ix_audit_entity", "entity_type", "entity_id"),
    )


class AccessLogEntry(Base):
    """Who looked at which person's case, when and for what (Art. 5(2), 15 GDPR).

    A repeated view of the same case by the same user for the same purpose within a short
    window is one entry (``access_log_window_minutes``)."""

    __tablename__ = "access_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(80))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    organisation_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    purpose: Mapped[str] = mapped_column(String(20))  # case, queue, list, timeline, export ...

    __table_args__ = (
        Index("ix_access_log_case_time", "case_id", "occurred_at"),
        Index("ix_access_log_actor_time", "actor", "occurred_at"),
    )


class Erasure(Base):
    """The tombstone of an erased or anonymised case: no personal data, append-only.

    Its existence is what allows the database to let the case's audit events go (see the
    triggers in migration 0004); nothing else may delete an audit event."""

    __tablename__ = "erasures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    erased_at: Mapped[datetime]
    erased_by: Mapped[str] = mapped_column(String(80))  # username or "system:<job>"
    basis: Mapped[str] = mapped_column(String(20))  # request (Art. 17) or retention
    case_id: Mapped[int] = mapped_column(Integer, index=True)  # no foreign key: may be gone
    newcomer_id: Mapped[int] = mapped_column(Integer, index=True)
    # HMAC of the case reference under the server secret: lets the office confirm that a
    # given reference was erased, without the tombstone holding the reference itself.
    reference_hash: Mapped[str] = mapped_column(String(64), index=True)
    removed: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # rows per table


class OutboxMessage(Base):
    """A message to send, written in the same transaction as the change that caused it."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), index=True)
    recipient_org_id: Mapped[int | None] = mapped_column(ForeignKey("organisations.id"))
    recipient_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recipient_newcomer_id: Mapped[int | None] = mapped_column(ForeignKey("newcomers.id"))
    language: Mapped[str] = mapped_column(String(8), default="de")
    context: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[OutboxStatus] = mapped_column(_enum(OutboxStatus), default=OutboxStatus.pending)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_outbox_status_next", "status", "next_attempt_at"),
        Index("ix_outbox_recipient_newcomer", "recipient_newcomer_id"),
    )


class StoredReport(Base):
    """A generated report kept as it was issued (aggregates only, never personal data)."""

    __tablename__ = "reports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))  # monthly, fit
    period: Mapped[str] = mapped_column(String(10))  # 2026-10, 2024
    language: Mapped[str] = mapped_column(String(8))  # "" for csv and json
    format: Mapped[str] = mapped_column(String(8))
    generated_at: Mapped[datetime]
    generated_by: Mapped[str] = mapped_column(String(80))  # username or "system:<job>"
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    content: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)

    __table_args__ = (
        UniqueConstraint("kind", "period", "language", "format", name="uq_reports_file"),
    )


# --- FIT@THGA ---------------------------------------------------------------------------------


class FitParticipant(Base):
    """A student in the FIT@THGA programme: THGA's own record, one per newcomer."""

    __tablename__ = "fit_participants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    newcomer_id: Mapped[int] = mapped_column(ForeignKey("newcomers.id"), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    enrolled_on: Mapped[date] = mapped_column(Date)
    channel: Mapped[FitChannel] = mapped_column(_enum(FitChannel))
    study_programme: Mapped[str] = mapped_column(String(200))
    semester: Mapped[int] = mapped_column(Integer)
    status: Mapped[FitStatus] = mapped_column(_enum(FitStatus), default=FitStatus.enrolled)
    graduated_on: Mapped[date | None] = mapped_column(Date)
    left_on: Mapped[date | None] = mapped_column(Date)  # dropped out or withdrawn
    job_employer: Mapped[str | None] = mapped_column(String(200))
    job_started_on: Mapped[date | None] = mapped_column(Date)
    job_in_region: Mapped[bool | None] = mapped_column(Boolean)  # Bochum / the Ruhr
    created_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)

    newcomer: Mapped[Newcomer] = relationship()

    __table_args__ = (Index("ix_fit_participants_enrolled", "enrolled_on", "status"),)
    __mapper_args__ = {"version_id_col": version}


class FitOffer(Base):
    """A training, seminar, excursion, job fair or placement with a number of places."""

    __tablename__ = "fit_offers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[OfferKind] = mapped_column(_enum(OfferKind))
    title: Mapped[str] = mapped_column(String(200))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    place: Mapped[str] = mapped_column(String(200))
    company: Mapped[str | None] = mapped_column(String(200))
    capacity: Mapped[int] = mapped_column(Integer)
    status: Mapped[OfferStatus] = mapped_column(_enum(OfferStatus), default=OfferStatus.planned)
    created_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (Index("ix_fit_offers_starts", "starts_at"),)
    __mapper_args__ = {"version_id_col": version}


class FitRegistration(Base):
    """A participant's place on an offer, or their turn on its waiting list."""

    __tablename__ = "fit_registrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("fit_offers.id"))
    participant_id: Mapped[int] = mapped_column(ForeignKey("fit_participants.id"), index=True)
    status: Mapped[RegistrationStatus] = mapped_column(_enum(RegistrationStatus))
    registered_at: Mapped[datetime]  # the waiting list moves up in this order
    placed_at: Mapped[datetime | None]  # got a place (at once, or from the waiting list)
    updated_at: Mapped[datetime]

    __table_args__ = (
        UniqueConstraint("offer_id", "participant_id", name="uq_fit_registrations_offer_person"),
        Index("ix_fit_registrations_offer_status", "offer_id", "status", "registered_at"),
    )


class FitContact(Base):
    """A contact between a participant and a company (visit, fair talk, application ...)."""

    __tablename__ = "fit_contacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("fit_participants.id"), index=True)
    company: Mapped[str] = mapped_column(String(200))
    kind: Mapped[ContactKind] = mapped_column(_enum(ContactKind))
    contact_on: Mapped[date] = mapped_column(Date)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("fit_offers.id"))
    created_at: Mapped[datetime]


class FitJob(Base):
    """A job while studying; its days count against the yearly limit unless its kind is exempt."""

    __tablename__ = "fit_jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("fit_participants.id"), index=True)
    employer: Mapped[str] = mapped_column(String(200))
    kind: Mapped[JobKind] = mapped_column(_enum(JobKind))
    starts_on: Mapped[date] = mapped_column(Date)
    ends_on: Mapped[date | None] = mapped_column(Date)
    in_region: Mapped[bool] = mapped_column(Boolean, default=True)
    offer_id: Mapped[int | None] = mapped_column(ForeignKey("fit_offers.id"))  # a placement
    created_at: Mapped[datetime]

    days: Mapped[list[FitWorkDay]] = relationship(back_populates="job")


class FitWorkDay(Base):
    """One day worked: a full day, or a half day (up to four hours)."""

    __tablename__ = "fit_work_days"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("fit_jobs.id"))
    day: Mapped[date] = mapped_column(Date)
    half: Mapped[bool] = mapped_column(Boolean, default=False)

    job: Mapped[FitJob] = relationship(back_populates="days")

    __table_args__ = (UniqueConstraint("job_id", "day", name="uq_fit_work_days_job_day"),)


class FitPermit(Base):
    """A residence title that matters for the programme: student, job search (§20), work."""

    __tablename__ = "fit_permits"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    participant_id: Mapped[int] = mapped_column(ForeignKey("fit_participants.id"), index=True)
    kind: Mapped[PermitKind] = mapped_column(_enum(PermitKind))
    valid_from: Mapped[date] = mapped_column(Date)
    valid_until: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]

    __table_args__ = (Index("ix_fit_permits_until", "valid_until"),)


@event.listens_for(Erasure, "before_update")
@event.listens_for(Erasure, "before_delete")
@event.listens_for(AuditEvent, "before_update")
@event.listens_for(AuditEvent, "before_delete")
def _refuse_audit_change(
    _mapper: Mapper[Any], _connection: Any, target: AuditEvent | Erasure
) -> None:
    raise PermissionError(f"{target.__tablename__} row {target.id} is append-only")

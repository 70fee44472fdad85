"""What the tracker holds about a person (Art. 15 GDPR), and who has looked at it.

``subject_data`` gathers everything about the person behind a case reference – the person's
facts, every case with its steps and handoffs, consents, messages, FIT@THGA records, the
history and the access log – as plain JSON-ready data. ``render_export`` turns it into JSON,
a readable HTML page (templates/export/subject.<lang>.html) or a PDF. The export is written
through ``tracker.privacy.erasure.export_person``, which records it in the audit trail.

Staff are named by their organisation, not by username: the person learns who processed
their data (Art. 15(1)(c)) without the export becoming a staff directory.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from jinja2 import TemplateNotFound
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.access import CURRENT_CONSENT, Actor, require_case_manager
from tracker.config import get_settings
from tracker.errors import NotFoundError, ValidationFailed
from tracker.messages.rendering import (
    TemplateMissing,
    get_environment,
    template_languages,
    text_direction,
)
from tracker.models import (
    AccessLogEntry,
    AuditEvent,
    Case,
    Consent,
    FitContact,
    FitJob,
    FitOffer,
    FitParticipant,
    FitPermit,
    FitRegistration,
    FitWorkDay,
    Handoff,
    Newcomer,
    Organisation,
    OutboxMessage,
    Step,
    User,
)
from tracker.pathway import get_registry
from tracker.privacy import access_log
from tracker.schemas import NEWCOMER_FIELDS

FORMAT_VERSION = 1
FORMATS = ("json", "html", "pdf")
SYSTEM = "automatic"


def export_languages() -> list[str]:
    return template_languages("export", "subject")


def _iso(value: date | datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def newcomer_id_for(session: Session, reference: str) -> int:
    newcomer_id = session.scalar(
        select(Case.newcomer_id).where(Case.reference == reference.strip().upper())
    )
    if newcomer_id is None:
        raise NotFoundError(
            "No case with reference '{reference}'.",
            reference=reference,
        )
    return newcomer_id


def subject_data(
    session: Session, *, actor: Actor, reference: str, now: datetime
) -> dict[str, Any]:
    """Everything held about the person behind ``reference`` (case managers and admins)."""
    require_case_manager(actor, "export a person's data")
    newcomer_id = newcomer_id_for(session, reference)
    person = session.get_one(Newcomer, newcomer_id)
    orgs = {o.id: o for o in session.scalars(select(Organisation))}
    users = {u.id: u for u in session.scalars(select(User))}
    catalogue = get_registry().catalogue

    def org_name(org_id: int | None) -> str | None:
        return orgs[org_id].name if org_id in orgs else None

    def staff(user_id: int | None, name: str = "") -> str:
        user = users.get(user_id) if user_id is not None else None
        if user is None:
            return SYSTEM if name.startswith("system:") or not name else name
        org = org_name(user.organisation_id)
        return org or get_settings().office_name

    cases = list(
        session.scalars(select(Case).where(Case.newcomer_id == newcomer_id).order_by(Case.id))
    )
    case_ids = [c.id for c in cases]
    access_log.note(session, actor, case_ids, "export")
    steps_by_case: dict[int, list[Step]] = {}
    for step in session.scalars(
        select(Step).where(Step.case_id.in_(case_ids)).order_by(Step.case_id, Step.position)
    ):
        steps_by_case.setdefault(step.case_id, []).append(step)
    handoffs_by_step: dict[int, list[Handoff]] = {}
    for handoff in session.scalars(
        select(Handoff).where(Handoff.case_id.in_(case_ids)).order_by(Handoff.id)
    ):
        handoffs_by_step.setdefault(handoff.step_id, []).append(handoff)

    def step_data(step: Step) -> dict[str, Any]:
        entry = catalogue.get(step.key)
        return {
            "key": step.key,
            "title_de": entry.title.de if entry else step.key,
            "title_en": entry.title.en if entry else step.key,
            "state": str(step.state),
            "responsible": org_name(step.owner_org_id),
            "opened_at": _iso(step.opened_at),
            "started_at": _iso(step.started_at),
            "done_at": _iso(step.done_at),
            "legal_due": _iso(step.legal_due),
            "legal_reference": step.legal_reference,
            "service_due": _iso(step.service_due),
            "outcome": step.outcome,
            "blocked_reason": step.blocked_reason,
            "skip_reason": step.skip_reason,
            "handoffs": [
                {
                    "organisation": org_name(h.organisation_id),
                    "state": str(h.state),
                    "offered_at": _iso(h.offered_at),
                    "accepted_at": _iso(h.accepted_at),
                    "closed_at": _iso(h.closed_at),
                    "reason": h.reason,
                    "hold_reason": h.hold_reason,
                }
                for h in handoffs_by_step.get(step.id, [])
            ],
        }

    consents = [
        {
            "organisation": org_name(c.organisation_id),
            "purpose": c.purpose,
            "method": str(c.method),
            "notice_language": c.notice_language,
            "given_at": _iso(c.given_at),
            "revoked_at": _iso(c.revoked_at),
        }
        for c in session.scalars(
            select(Consent).where(Consent.newcomer_id == newcomer_id).order_by(Consent.given_at)
        )
    ]
    messages = [
        {
            "kind": m.kind,
            "to": (
                "you"
                if m.recipient_newcomer_id == newcomer_id
                else org_name(m.recipient_org_id) or staff(m.recipient_user_id)
            ),
            "language": m.language,
            "status": str(m.status),
            "created_at": _iso(m.created_at),
            "sent_at": _iso(m.sent_at),
        }
        for m in sorted(
            {
                m.id: m
                for where in (
                    OutboxMessage.case_id.in_(case_ids),
                    OutboxMessage.recipient_newcomer_id == newcomer_id,
                )
                for m in session.scalars(select(OutboxMessage).where(where))
            }.values(),
            key=lambda m: (m.created_at, m.id),
        )
    ]
    history = [
        {
            "at": _iso(e.occurred_at),
            "by": staff(e.actor_id, e.actor),
            "action": e.action,
            "step": (e.details or {}).get("step"),
            "reason": e.reason,
        }
        for e in sorted(
            [
                *session.scalars(select(AuditEvent).where(AuditEvent.case_id.in_(case_ids))),
                *session.scalars(
                    select(AuditEvent).where(
                        AuditEvent.entity_type == "newcomer", AuditEvent.entity_id == newcomer_id
                    )
                ),
            ],
            key=lambda e: (e.occurred_at, e.id),
        )
    ]
    views = [
        {
            "at": _iso(v.occurred_at),
            "by": org_name(v.organisation_id) or get_settings().office_name,
            "purpose": v.purpose,
        }
        for v in session.scalars(
            select(AccessLogEntry)
            .where(AccessLogEntry.case_id.in_(case_ids))
            .order_by(AccessLogEntry.occurred_at, AccessLogEntry.id)
        )
    ]
    recipients = sorted(
        {
            name
            for org_id in session.scalars(
                select(Consent.organisation_id).where(
                    Consent.newcomer_id == newcomer_id, *CURRENT_CONSENT
                )
            )
            if (name := org_name(org_id))
        }
        | {
            name
            for steps in steps_by_case.values()
            for s in steps
            for h in handoffs_by_step.get(s.id, [])
            if (name := org_name(h.organisation_id))
        }
    )
    return {
        "export": {
            "format_version": FORMAT_VERSION,
            "office": get_settings().office_name,
            "generated_at": _iso(now),
            "reference": reference.strip().upper(),
            "retention_months": get_settings().retention_months,
        },
        "person": {
            **{f: _json_value(getattr(person, f)) for f in NEWCOMER_FIELDS},
            "registered_at": _iso(person.created_at),
        },
        "cases": [
            {
                "reference": c.reference,
                "pathway": c.pathway_key,
                "pathway_version": c.pathway_version,
                "status": str(c.status),
                "case_manager": staff(c.case_manager_id) if c.case_manager_id else None,
                "opened_at": _iso(c.opened_at),
                "closed_at": _iso(c.closed_at),
                "steps": [step_data(s) for s in steps_by_case.get(c.id, [])],
            }
            for c in cases
        ],
        "consents": consents,
        "recipients": recipients,
        "messages": messages,
        "fit": _fit_data(session, newcomer_id),
        "history": history,
        "access_log": views,
    }


def _json_value(value: Any) -> Any:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if hasattr(value, "value"):  # enums
        return str(value)
    return value


def _fit_data(session: Session, newcomer_id: int) -> dict[str, Any] | None:
    participant = session.scalars(
        select(FitParticipant).where(FitParticipant.newcomer_id == newcomer_id)
    ).one_or_none()
    if participant is None:
        return None
    pid = participant.id
    registrations = [
        {
            "offer": title,
            "kind": str(kind),
            "starts_at": _iso(starts),
            "status": str(r.status),
            "registered_at": _iso(r.registered_at),
        }
        for r, title, kind, starts in session.execute(
            select(FitRegistration, FitOffer.title, FitOffer.kind, FitOffer.starts_at)
            .join(FitOffer, FitRegistration.offer_id == FitOffer.id)
            .where(FitRegistration.participant_id == pid)
            .order_by(FitOffer.starts_at)
        )
    ]
    jobs = []
    for job in session.scalars(select(FitJob).where(FitJob.participant_id == pid)):
        days = session.scalars(select(FitWorkDay).where(FitWorkDay.job_id == job.id)).all()
        jobs.append(
            {
                "employer": job.employer,
                "kind": str(job.kind),
                "starts_on": _iso(job.starts_on),
                "ends_on": _iso(job.ends_on),
                "days_recorded": len(days),
                "half_days": sum(1 for d in days if d.half),
            }
        )
    return {
        "enrolled_on": _iso(participant.enrolled_on),
        "channel": str(participant.channel),
        "study_programme": participant.study_programme,
        "semester": participant.semester,
        "status": str(participant.status),
        "graduated_on": _iso(participant.graduated_on),
        "left_on": _iso(participant.left_on),
        "job_employer": participant.job_employer,
        "job_started_on": _iso(participant.job_started_on),
        "registrations": registrations,
        "contacts": [
            {"company": c.company, "kind": str(c.kind), "on": _iso(c.contact_on)}
            for c in session.scalars(
                select(FitContact)
                .where(FitContact.participant_id == pid)
                .order_by(FitContact.contact_on)
            )
        ],
        "jobs": jobs,
        "permits": [
            {
                "kind": str(p.kind),
                "valid_from": _iso(p.valid_from),
                "valid_until": _iso(p.valid_until),
            }
            for p in session.scalars(
                select(FitPermit).where(FitPermit.participant_id == pid).order_by(FitPermit.id)
            )
        ],
    }


class ExportFile(BaseModel):
    name: str
    media_type: str
    content: bytes


MEDIA_TYPES = {
    "json": "application/json",
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
}


def export_file_name(reference: str, fmt: str) -> str:
    return f"auskunft-{reference.strip().upper()}.{fmt}"


def render_export(data: dict[str, Any], *, fmt: str = "json", language: str = "de") -> ExportFile:
    """The export as a file: JSON (machine-readable), or HTML / PDF to read."""
    if fmt not in FORMATS:
        raise ValidationFailed(
            "The format must be one of {formats}.",
            formats=", ".join(FORMATS),
        )
    reference = data["export"]["reference"]
    name = export_file_name(reference, fmt)
    if fmt == "json":
        content = json.dumps(data, ensure_ascii=False, indent=2).encode()
        return ExportFile(name=name, media_type=MEDIA_TYPES[fmt], content=content)
    html = render_export_html(data, language=language)
    if fmt == "html":
        return ExportFile(name=name, media_type=MEDIA_TYPES[fmt], content=html.encode())
    from tracker.messages.pdf import html_to_pdf

    return ExportFile(name=name, media_type=MEDIA_TYPES[fmt], content=html_to_pdf(html))


def render_export_html(data: dict[str, Any], *, language: str = "de") -> str:
    lang = language if language in export_languages() else "de"
    name = f"export/subject.{lang}.html"
    try:
        template = get_environment().get_template(name)
    except TemplateNotFound as exc:  # pragma: no cover - the templates ship with the code
        raise TemplateMissing(
            "No export template {name}.",
            name=name,
        ) from exc
    return template.render({**data, "lang": lang, "rtl": text_direction(lang) == "rtl"})

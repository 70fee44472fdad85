"""Rights of the person: Art. 15 export, Art. 17 erasure, retention, the access log, and the
append-only audit trail that lets audit events go only with a tombstone."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import LargeBinary, func, select, text

from tests.conftest import NOW
from tests.helpers import advance, deliver, start_case
from tests.test_fit import student_with_open_fit_step
from tracker import fit
from tracker.config import get_settings
from tracker.db import Database
from tracker.demo.load import load_demo
from tracker.enums import ContactKind, FitChannel, JobKind, OfferKind, PermitKind
from tracker.errors import NotFoundError, PermissionDenied, ValidationFailed
from tracker.fit import queries as fit_queries
from tracker.journeys.handoffs import decline_handoff
from tracker.journeys.queries import case_view, list_cases, partner_queue, timeline
from tracker.journeys.steps import block_step
from tracker.messages.digest import build_digests
from tracker.messages.senders import FileSender
from tracker.models import (
    AccessLogEntry,
    AuditEvent,
    Base,
    Case,
    Erasure,
    FitOffer,
    FitRegistration,
    Newcomer,
    OutboxMessage,
    User,
)
from tracker.privacy.erasure import erase_person, export_person
from tracker.privacy.export import render_export
from tracker.privacy.queries import access_history, erasures_for
from tracker.privacy.retention import anonymise_expired, count_expired, expired_newcomers
from tracker.reporting import figures as outcomes

GIVEN, FAMILY = "Zoryana", "Qwertyukowa"
EMAIL, PHONE = "zoryana.q@example.org", "+49 234 5550199"


def marked_student(db: Database, actors: Any, mail_dir: Path) -> str:
    """A FIT student touched by every part of the tracker, whose name is easy to search for:
    steps with reasons that name her, a declined handoff, FIT offers, jobs, work days,
    contacts, a permit, messages delivered to the mail drop, and views by staff."""
    cm, thga = actors["cm.mueller"], actors["thga.nowak"]
    ref = student_with_open_fit_step(
        db, actors, given_name=GIVEN, family_name=FAMILY, email=EMAIL, phone=PHONE
    )
    with db.transaction() as s:  # THGA's digest names her case (by reference) among others
        build_digests(s, day=NOW.date(), now=NOW)
    with db.transaction() as s:
        block_step(
            s,
            actor=cm,
            reference=ref,
            step_key="health_insurance",
            reason=f"Frau {FAMILY} bringt die Versicherungskarte nach",
            now=NOW,
        )
    with db.transaction() as s:
        p = fit.enrol(
            s,
            actor=cm,
            reference=ref,
            channel=FitChannel.orientation_week,
            study_programme="Geotechnik",
            semester=2,
            enrolled_on=NOW.date(),
            now=NOW,
        )
        pid = p.id
    with db.transaction() as s:
        offer = fit.create_offer(
            s,
            actor=thga,
            kind=OfferKind.job_fair,
            title="Karrieretag",
            starts_at=NOW + timedelta(days=20),
            ends_at=NOW + timedelta(days=20, hours=3),
            place="THGA",
            capacity=1,
            now=NOW,
        )
        offer_id = offer.id
    with db.transaction() as s:
        fit.register(s, actor=thga, offer_id=offer_id, participant_id=pid, now=NOW)
        fit.add_contact(
            s,
            actor=thga,
            participant_id=pid,
            company="Bergbau AG",
            kind=ContactKind.company_visit,
            contact_on=NOW.date(),
            now=NOW,
        )
        job = fit.add_job(
            s,
            actor=thga,
            participant_id=pid,
            employer=f"Büro {FAMILY} & Co",
            kind=JobKind.working_student,
            starts_on=NOW.date() - timedelta(days=30),
            now=NOW,
        )
        job_id = job.id
        fit.add_permit(
            s,
            actor=thga,
            participant_id=pid,
            kind=PermitKind.student,
            valid_from=date(2025, 10, 1),
            valid_until=date(2027, 9, 30),
            now=NOW,
        )
    with db.transaction() as s:
        fit.record_work_days(
            s,
            actor=thga,
            job_id=job_id,
            days=[NOW.date() - timedelta(days=d) for d in range(1, 4)],
            now=NOW,
        )
    # Staff look at her: the case page, lists, a partner's queue, the FIT lists.
    with db.read() as s:
        case_view(s, actor=cm, reference=ref)
        list_cases(s, actor=cm, search=FAMILY)
        timeline(s, actor=cm, reference=ref)
    deliver(db, sender=FileSender(mail_dir), now=NOW)
    return ref


def another_person(db: Database, actors: Any) -> str:
    ref = start_case(db, actors["cm.yilmaz"], now=NOW, given_name="Amara", family_name="Okafor")
    with db.transaction() as s:
        decline_handoff(
            s,
            actor=actors["ihk.hoffmann"],
            reference=ref,
            step_key="recognition",
            reason="Handwerksberuf: bitte HWK",
            now=NOW,
        )
    return ref


def cells_naming(db: Database, needles: list[str]) -> list[str]:
    """Every table cell (text, JSON, bytes) that contains one of the needles."""
    hits = []
    with db.read() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(table.select()).mappings():
                for column, value in row.items():
                    if value is None:
                        continue
                    if isinstance(table.c[column].type, LargeBinary):
                        blob = bytes(value).decode("utf-8", "replace")
                    elif isinstance(value, dict | list):
                        blob = json.dumps(value, ensure_ascii=False)
                    else:
                        blob = str(value)
                    for needle in needles:
                        if needle.casefold() in blob.casefold():
                            hits.append(f"{table.name}.{column}: {needle}")
    return hits


def files_naming(folder: Path, needles: list[str]) -> list[str]:
    hits = []
    for path in folder.rglob("*"):
        if path.is_file():
            blob = path.read_bytes().decode("utf-8", "replace").casefold()
            hits += [f"{path.name}: {n}" for n in needles if n.casefold() in blob]
    return hits


NEEDLES = [FAMILY, GIVEN, EMAIL, PHONE.replace(" ", "")[-7:], "5550199"]


def test_the_export_holds_everything_about_the_person_and_nothing_of_others(db, actors, tmp_path):
    ref = marked_student(db, actors, tmp_path / "mail")
    other = another_person(db, actors)
    with db.read() as s:  # a partner looks too: it must show in her access log
        fit_queries.participants(s, actor=actors["thga.nowak"])
    with db.transaction() as s:
        data = export_person(s, actor=actors["cm.mueller"], reference=ref, now=NOW)
    assert data["person"]["family_name"] == FAMILY
    assert data["person"]["email"] == EMAIL
    (case,) = data["cases"]
    assert case["reference"] == ref
    steps = {st["key"]: st for st in case["steps"]}
    assert steps["housing"]["state"] == "done"
    assert FAMILY in steps["health_insurance"]["blocked_reason"]
    assert {c["organisation"] for c in data["consents"]} >= {
        "Technische Hochschule Georg Agricola (THGA)"
    }
    assert all(c["method"] == "signed_form" for c in data["consents"])
    assert "sent" in {m["status"] for m in data["messages"]}
    assert {"welcome", "handoff_offered"} <= {m["kind"] for m in data["messages"]}
    assert data["fit"]["study_programme"] == "Geotechnik"
    assert data["fit"]["jobs"][0]["days_recorded"] == 3
    assert data["fit"]["registrations"][0]["offer"] == "Karrieretag"
    assert data["fit"]["permits"][0]["valid_until"] == "2027-09-30"
    actions = [e["action"] for e in data["history"]]
    assert "newcomer.registered" in actions and "step.blocked" in actions
    purposes = {(v["by"], v["purpose"]) for v in data["access_log"]}
    assert ("Technische Hochschule Georg Agricola (THGA)", "fit") in purposes
    assert {"case", "list", "timeline"} <= {p for _, p in purposes}
    # Nothing of the other person, and staff appear by organisation, not by username.
    blob = json.dumps(data, ensure_ascii=False)
    assert "Okafor" not in blob and other not in blob
    assert "cm.mueller" not in blob
    # The export itself is recorded.
    with db.read() as s:
        assert s.scalar(
            select(func.count()).where(
                AuditEvent.action == "person.exported", AuditEvent.case_id.is_not(None)
            )
        )


@pytest.mark.parametrize("fmt", ["json", "html"])
def test_the_export_renders_readably_and_keeps_hostile_text_inert(db, actors, fmt):
    ref = start_case(
        db,
        actors["cm.mueller"],
        now=NOW,
        given_name="<script>alert(1)</script>",
        family_name="{{ 7*7 }}",
    )
    with db.transaction() as s:
        data = export_person(s, actor=actors["cm.mueller"], reference=ref, now=NOW)
    for lang in ("de", "en"):
        file = render_export(data, fmt=fmt, language=lang)
        body = file.content.decode()
        assert file.name == f"auskunft-{ref}.{fmt}"
        if fmt == "html":
            assert "<script>" not in body and "&lt;script&gt;" in body
            assert "{{ 7*7 }}" in body and ">49<" not in body
            assert ("Ihre Angaben" if lang == "de" else "Your details") in body
            assert ref in body
        else:
            assert json.loads(body)["person"]["family_name"] == "{{ 7*7 }}"


@pytest.mark.parametrize("empty_db", ["sqlite"], indirect=True)  # the PDF is the same on both
def test_the_export_pdf_is_a_readable_document(db, actors):
    from io import BytesIO

    from pypdf import PdfReader

    ref = start_case(db, actors["cm.mueller"], now=NOW, given_name="Olena", family_name="Kovalenko")
    with db.transaction() as s:
        data = export_person(s, actor=actors["cm.mueller"], reference=ref, now=NOW)
    pdf = render_export(data, fmt="pdf", language="de").content
    assert pdf.startswith(b"%PDF")
    text_ = "".join(page.extract_text() for page in PdfReader(BytesIO(pdf)).pages)
    assert "Kovalenko" in text_ and "Auskunft" in text_ and ref in text_


@pytest.mark.parametrize("username", ["lead.schmidt", "stadt.weber", "thga.nowak"])
def test_only_case_managers_and_admins_export(db, actors, username):
    ref = start_case(db, actors["cm.mueller"], now=NOW)
    with db.transaction() as s, pytest.raises(PermissionDenied):
        export_person(s, actor=actors[username], reference=ref, now=NOW)
    with db.transaction() as s:
        assert export_person(s, actor=actors["admin"], reference=ref, now=NOW)["cases"]


def test_erasure_leaves_the_name_in_no_table_and_no_file(db, actors, tmp_path):
    mail = tmp_path / "mail"
    ref = marked_student(db, actors, mail)
    other = another_person(db, actors)
    assert cells_naming(db, NEEDLES), "the search must find her before the erasure"
    with db.read() as s:
        digests = s.scalars(select(OutboxMessage).where(OutboxMessage.kind == "digest"))
        assert [d.id for d in digests if ref in json.dumps(d.context)], "a digest names her"
    assert files_naming(mail, [EMAIL, ref]), "her messages are in the mail drop"
    with db.read() as s:
        others_before = s.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.case_id.is_not(None))
        )
        her_events = s.scalar(
            select(func.count())
            .select_from(AuditEvent)
            .join(Case, AuditEvent.case_id == Case.id)
            .where(Case.reference == ref)
        )
    with db.transaction() as s:
        removal = erase_person(s, actor=actors["admin"], reference=ref, confirm=ref, mail_dir=mail)
    assert removal.removed["cases"] == 1 and removal.removed["newcomers"] == 1
    assert removal.removed["fit_participants"] == 1 and removal.removed["fit_work_days"] == 3
    assert removal.removed["outbox"] > 0 and removal.mail_files
    assert removal.removed["access_log"] >= 3
    assert cells_naming(db, [*NEEDLES, ref]) == []
    assert removal.removed["references_blanked"] >= 1
    with db.read() as s:  # the digest itself stays, for the other cases it names
        assert s.scalar(select(func.count()).where(OutboxMessage.kind == "digest"))
    assert files_naming(mail, [*NEEDLES, ref]) == []
    assert files_naming(get_settings().data_dir, NEEDLES) == []
    with db.read() as s:
        # The other person is untouched.
        view = case_view(s, actor=actors["cm.yilmaz"], reference=other)
        assert view.newcomer["family_name"] == "Okafor"
        (tomb,) = s.scalars(select(Erasure)).all()
        assert tomb.basis == "request" and tomb.erased_by == "admin"
        # Her case's events and the one about registering her before the case existed.
        assert tomb.removed["audit_events"] == her_events + 1
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "person.erased")).one()
        assert event.case_id is None and event.entity_id == tomb.id
        left = s.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.case_id.is_not(None))
        )
        assert left == others_before - her_events
        # The office can confirm the erasure by the reference the person quotes.
        assert [e.id for e in erasures_for(s, actor=actors["admin"], reference=ref)] == [tomb.id]
        with pytest.raises(NotFoundError):
            case_view(s, actor=actors["cm.mueller"], reference=ref)


def test_erasure_needs_an_admin_and_the_reference_typed_again(db, actors):
    ref = start_case(db, actors["cm.mueller"], now=NOW)
    with db.transaction() as s, pytest.raises(PermissionDenied):
        erase_person(s, actor=actors["cm.mueller"], reference=ref, confirm=ref)
    with db.transaction() as s, pytest.raises(ValidationFailed, match="reference again"):
        erase_person(s, actor=actors["admin"], reference=ref, confirm="WO-XXXX-XXXX")
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(Newcomer)) == 1
        assert s.scalar(select(func.count()).select_from(Erasure)) == 0


def test_an_erased_students_place_goes_to_the_waiting_list(db, actors, tmp_path):
    ref = marked_student(db, actors, tmp_path / "mail")
    # A second student waits for the one place of the offer.
    second = student_with_open_fit_step(db, actors, given_name="Second")
    thga = actors["thga.nowak"]
    with db.transaction() as s:
        p2 = fit.enrol(
            s,
            actor=actors["cm.mueller"],
            reference=second,
            channel=FitChannel.lecturer,
            study_programme="Maschinenbau",
            semester=1,
            enrolled_on=NOW.date(),
            now=NOW,
        )
        offer_id = s.scalar(select(FitOffer.id))
    with db.transaction() as s:
        reg = fit.register(s, actor=thga, offer_id=offer_id, participant_id=p2.id, now=NOW)
        assert reg.status == "waitlisted"
    with db.transaction() as s:
        erase_person(
            s, actor=actors["admin"], reference=ref, confirm=ref, mail_dir=tmp_path, now=NOW
        )
    with db.read() as s:
        (only,) = s.scalars(select(FitRegistration)).all()
        assert only.participant_id == p2.id and only.status == "registered"


def test_audit_events_go_only_with_a_tombstone_and_tombstones_never(db, actors):
    ref = start_case(db, actors["cm.mueller"], now=NOW)
    with db.read() as s:
        case_id = s.scalar(select(Case.id).where(Case.reference == ref))
    for statement in (
        f"DELETE FROM audit_events WHERE case_id = {case_id}",
        f"UPDATE audit_events SET reason = 'x' WHERE case_id = {case_id}",
    ):
        with pytest.raises(Exception, match="append-only"), db.writer.begin() as conn:
            conn.execute(text(statement))
    with db.transaction() as s:
        erase_person(s, actor=actors["admin"], reference=ref, confirm=ref)
    with db.read() as s:
        tomb_id = s.scalar(select(Erasure.id))
    for statement in (
        f"DELETE FROM erasures WHERE id = {tomb_id}",
        f"UPDATE erasures SET basis = 'x' WHERE id = {tomb_id}",
        "DELETE FROM audit_events WHERE action = 'person.erased'",
    ):
        with pytest.raises(Exception, match="append-only"), db.writer.begin() as conn:
            conn.execute(text(statement))


def test_the_access_log_records_who_viewed_whom_once_per_window(db, actors):
    cm, ihk = actors["cm.mueller"], actors["ihk.hoffmann"]
    ref = start_case(db, cm, now=NOW)
    for _ in range(3):
        with db.read() as s:
            case_view(s, actor=cm, reference=ref)
    with db.read() as s:
        partner_queue(s, actor=ihk)
        case_view(s, actor=ihk, reference=ref)
    with db.read() as s, pytest.raises(NotFoundError):
        case_view(s, actor=actors["stadt.weber"], reference=ref)  # refused: not logged
    with db.read() as s:
        rows = access_history(s, actor=cm, reference=ref)
    seen = sorted((r.actor, r.purpose) for r in rows)
    assert seen == [("cm.mueller", "case"), ("ihk.hoffmann", "case"), ("ihk.hoffmann", "queue")]
    assert {r.organisation for r in rows if r.actor == "ihk.hoffmann"} == {
        "IHK Mittleres Ruhrgebiet"
    }
    with db.read() as s, pytest.raises(PermissionDenied):
        access_history(s, actor=ihk, reference=ref)
    with db.read() as s, pytest.raises(PermissionDenied):
        access_history(s, actor=actors["lead.schmidt"], reference=ref)


def test_a_view_after_the_window_is_logged_again(db, actors, monkeypatch):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW)
    monkeypatch.setattr(get_settings(), "access_log_window_minutes", 0)
    for _ in range(2):
        with db.read() as s:
            case_view(s, actor=cm, reference=ref)
    with db.read() as s:
        assert s.scalar(select(func.count()).select_from(AccessLogEntry)) == 2


# --- retention -------------------------------------------------------------------------------

AS_OF = date(2026, 10, 31)


def _figures(db: Database, lead: Any) -> dict[str, Any]:
    with db.read() as s:
        return {
            **{
                f"year{y}": outcomes.year_figures(s, actor=lead, year=y, today=AS_OF).model_dump()
                for y in (2024, 2025, 2026)
            },
            "month": outcomes.month_figures(
                s, actor=lead, year=2025, month=6, today=AS_OF
            ).model_dump(),
        }


def test_retention_anonymises_people_a_year_after_their_cases_ended_and_figures_stay(
    db, actors, tmp_path
):
    load_demo(db, people=220, seed=11, as_of=AS_OF)
    lead, system = actors["lead.schmidt"], actors["admin"]
    from datetime import UTC, datetime

    now = datetime(2026, 10, 31, 12, tzinfo=UTC)
    before = _figures(db, lead)
    with db.read() as s:
        due = expired_newcomers(s, now=now, limit=10_000)
        theirs = {
            v
            for n in s.scalars(select(Newcomer).where(Newcomer.id.in_(due)))
            for v in (n.given_name, n.family_name, n.email)
            if v and len(v) > 4
        }
        others = [
            v.casefold()
            for n in s.scalars(select(Newcomer).where(Newcomer.id.not_in(due)))
            for v in (n.given_name, n.family_name, n.email)
            if v
        ]
        users = [u.casefold() for u in s.scalars(select(User.display_name))]
        # Only what belongs to them alone: a name another person shares may stay with them.
        unique = sorted(v for v in theirs if not any(v.casefold() in o for o in others + users))
        recent = s.scalar(
            select(func.count())
            .select_from(Case)
            .where(Case.closed_at >= now - timedelta(days=365), Case.closed_at.is_not(None))
        )
    assert len(due) >= 10, "the demo must hold people whose cases ended over a year ago"
    assert recent, "and people whose cases ended recently, who must stay"
    done = 0
    while True:
        with db.transaction() as s:
            batch = anonymise_expired(s, actor=system, now=now, limit=25, mail_dir=tmp_path)
        if not batch:
            break
        done += len(batch)
    assert done == len(due)
    assert _figures(db, lead) == before
    with db.read() as s:
        assert expired_newcomers(s, now=now) == []
        people = s.scalars(select(Newcomer).where(Newcomer.id.in_(due))).all()
        assert all(p.anonymised_at and p.email is None and p.birth_date is None for p in people)
        assert all(p.given_name == "–" for p in people)
        # Their cases keep one tombstone event each and nothing else.
        case_ids = list(s.scalars(select(Case.id).where(Case.newcomer_id.in_(due))))
        actions = s.execute(
            select(AuditEvent.action, func.count())
            .where(AuditEvent.case_id.in_(case_ids))
            .group_by(AuditEvent.action)
        ).all()
        assert actions == [("case.anonymised", len(case_ids))]
        assert not s.scalar(
            select(func.count())
            .select_from(OutboxMessage)
            .where(OutboxMessage.recipient_newcomer_id.in_(due))
        )
        # Nobody else was touched.
        assert s.scalar(
            select(func.count()).select_from(Newcomer).where(Newcomer.anonymised_at.is_(None))
        ) == s.scalar(select(func.count()).select_from(Newcomer)) - len(due)
    assert len(unique) >= 10
    assert cells_naming(db, unique) == []


def _rows_about(s: Any, newcomer_id: int) -> dict[str, int]:
    """What anonymising this person alone must remove, counted one person at a time."""
    from sqlalchemy import or_

    from tracker.models import Consent, FitJob, FitParticipant, FitPermit, Handoff, Step

    cases = list(s.scalars(select(Case.id).where(Case.newcomer_id == newcomer_id)))
    participants = list(
        s.scalars(select(FitParticipant.id).where(FitParticipant.newcomer_id == newcomer_id))
    )

    def count(model: Any, *where: Any) -> int:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    expected = {
        "newcomers": 1,
        "steps": count(
            Step,
            Step.case_id.in_(cases),
            or_(Step.blocked_reason.is_not(None), Step.skip_reason.is_not(None)),
        ),
        "handoffs": count(
            Handoff,
            Handoff.case_id.in_(cases),
            or_(Handoff.reason.is_not(None), Handoff.hold_reason.is_not(None)),
        ),
    }
    if participants:
        expected["fit_jobs"] = count(FitJob, FitJob.participant_id.in_(participants))
        expected["fit_permits"] = count(FitPermit, FitPermit.participant_id.in_(participants))
    expected |= {
        "outbox": count(
            OutboxMessage,
            or_(
                OutboxMessage.case_id.in_(cases),
                OutboxMessage.recipient_newcomer_id == newcomer_id,
            ),
        ),
        "access_log": count(AccessLogEntry, AccessLogEntry.case_id.in_(cases)),
        "consents": count(Consent, Consent.newcomer_id == newcomer_id),
        "mail_files": 0,
        "references_blanked": 0,
        "audit_events": count(AuditEvent, AuditEvent.case_id.in_(cases))
        + count(
            AuditEvent, AuditEvent.entity_type == "newcomer", AuditEvent.entity_id == newcomer_id
        ),
    }
    return expected


def test_a_retention_batch_counts_what_went_person_by_person(db, actors, tmp_path):
    """A batch is anonymised with a statement per kind of change for everyone in it, and each
    person's removal, tombstones and audit event still say what went for that person alone."""
    from datetime import UTC, datetime

    from tracker.privacy.retention import anonymise_people

    load_demo(db, people=220, seed=11, as_of=AS_OF)
    system = actors["admin"]
    now = datetime(2026, 10, 31, 12, tzinfo=UTC)
    with db.read() as s:
        due = expired_newcomers(s, now=now, limit=40)
        expected = {n: _rows_about(s, n) for n in due}
        references = {
            n: list(s.scalars(select(Case.reference).where(Case.newcomer_id == n))) for n in due
        }
    assert len(due) >= 10
    # The batch has something of each kind to count apart (the demo holds all of these).
    for kind in ("steps", "handoffs", "outbox", "consents", "audit_events", "fit_permits"):
        assert sum(e.get(kind, 0) > 0 for e in expected.values()) >= 2, kind
    with db.transaction() as s:
        done = anonymise_people(s, actor=system, newcomer_ids=due, mail_dir=tmp_path, now=now)
    assert not done.refused
    assert [r.removed for r in done.removed] == [expected[n] for n in due]
    assert [r.reference for r in done.removed] == [
        references[n][0] if references[n] else "" for n in due
    ]
    with db.read() as s:
        for n, removal in zip(due, done.removed, strict=True):
            tombs = s.scalars(select(Erasure).where(Erasure.newcomer_id == n)).all()
            assert sorted(t.id for t in tombs) == sorted(removal.erasure_ids)
            assert len(tombs) == len(references[n])
            assert all(t.removed == expected[n] and t.basis == "retention" for t in tombs)
            events = s.scalars(
                select(AuditEvent).where(AuditEvent.case_id.in_([t.case_id for t in tombs]))
            ).all()
            assert [e.action for e in events] == ["case.anonymised"] * len(tombs)
            assert all(e.details["removed"] == expected[n] for e in events)
            # Their cases have new references, each different.
            now_refs = set(s.scalars(select(Case.reference).where(Case.newcomer_id == n)))
            assert not now_refs & set(references[n])
    # Again: everyone is refused, nothing changes.
    with db.transaction() as s:
        again = anonymise_people(s, actor=system, newcomer_ids=due[:3], now=now)
    assert again.removed == [] and sorted(again.refused) == sorted(due[:3])


def test_the_retention_run_respects_the_configured_period(db, actors, monkeypatch):
    from datetime import UTC, datetime

    from tracker.journeys.cases import cancel_case

    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW)
    with db.transaction() as s:
        cancel_case(s, actor=cm, reference=ref, reason="moved away", now=NOW)
    eleven = datetime(2027, 2, 1, tzinfo=UTC)
    thirteen = datetime(2027, 4, 3, tzinfo=UTC)
    with db.read() as s:
        assert expired_newcomers(s, now=eleven) == [] and count_expired(s, now=eleven) == 0
        assert len(expired_newcomers(s, now=thirteen)) == 1 == count_expired(s, now=thirteen)
    monkeypatch.setattr(get_settings(), "retention_months", 6)
    with db.read() as s:
        assert len(expired_newcomers(s, now=eleven)) == 1
    with db.transaction() as s:
        (removal,) = anonymise_expired(s, actor=actors["admin"], now=eleven)
    assert removal.basis == "retention"
    with db.transaction() as s:
        assert anonymise_expired(s, actor=actors["admin"], now=eleven) == []
    assert cells_naming(db, ["Priya", "Raman", ref]) == []
    with db.read() as s:
        assert [e.basis for e in s.scalars(select(Erasure))] == ["retention"]


# --- minimum data across partners --------------------------------------------------------------


def test_other_partners_learn_of_the_employment_agencys_work_only_as_a_flag(db, actors):
    """The employment agency's step (social data, §67 SGB X) reaches nobody else but the
    case manager: no outcome, date or reason – at most 'done or not' where a step needs it."""
    from tracker.journeys.handoffs import accept_handoff, complete_handoff
    from tracker.journeys.steps import start_step

    cm, afa = actors["cm.mueller"], actors["afa.becker"]
    ref = start_case(db, cm, now=NOW)
    secret = "Vorrangprüfung negativ, Arbeitgeber Zeitarbeit"
    with db.transaction() as s:
        accept_handoff(s, actor=afa, reference=ref, step_key="job_offer", now=NOW)
    with db.transaction() as s:
        block_step(s, actor=cm, reference=ref, step_key="job_offer", reason=secret, now=NOW)
    with db.transaction() as s:
        start_step(s, actor=cm, reference=ref, step_key="job_offer", now=NOW)
    with db.transaction() as s:
        complete_handoff(
            s, actor=afa, reference=ref, step_key="job_offer", outcome="approved", now=NOW
        )
    ihk = actors["ihk.hoffmann"]
    with db.read() as s:
        seen_by_ihk = case_view(s, actor=ihk, reference=ref).model_dump_json()
        queue = [q.model_dump_json() for q in partner_queue(s, actor=ihk)]
        seen_by_cm = case_view(s, actor=cm, reference=ref)
    assert {st.key for st in seen_by_cm.steps} >= {"job_offer"}
    assert "approved" in seen_by_cm.model_dump_json()
    for blob in [seen_by_ihk, *queue]:
        assert "job_offer" not in blob and "approved" not in blob and secret not in blob
        assert "afa-bochum" not in blob and "Agentur für Arbeit" not in blob


def test_a_partner_sees_what_its_step_waits_for_only_as_done_or_not(db, actors):
    from tracker.journeys.handoffs import accept_handoff, complete_handoff

    cm, stadt = actors["cm.mueller"], actors["stadt.weber"]
    ref = start_case(db, cm, now=NOW, purpose="study", nationality="VN")
    with db.transaction() as s:
        accept_handoff(
            s, actor=actors["akafoe.fischer"], reference=ref, step_key="housing", now=NOW
        )
    with db.transaction() as s:
        complete_handoff(
            s, actor=actors["akafoe.fischer"], reference=ref, step_key="housing", now=NOW
        )
    advance(db, cm, ref, now=NOW)
    with db.read() as s:
        view = case_view(s, actor=stadt, reference=ref)
    (registration,) = [st for st in view.steps if st.key == "registration"]
    assert registration.prerequisites == {"housing": True}
    assert [st.key for st in view.steps] == ["registration"]  # not the housing step itself
    assert "AKAFÖ" not in view.model_dump_json()


# --- consent ---------------------------------------------------------------------------------

OUTCOME = {
    "recognition": "full",
    "job_offer": "approved",
    "visa": "granted",
    "residence_title": "issued",
    "job_entry": "started",
}


def test_without_any_consent_the_case_manager_still_walks_the_whole_journey(db, actors):
    """No service is refused for want of consent: partner steps are held with a visible
    reason, and the case manager can do each with the newcomer directly."""
    from datetime import timedelta

    from tracker.journeys.steps import complete_step

    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, consent_to=[])
    t = NOW
    for _ in range(20):
        with db.read() as s:
            view = case_view(s, actor=cm, reference=ref)
        if view.status == "closed":
            break
        held = [st.handoff.hold_reason for st in view.steps if st.handoff]
        assert set(held) <= {"consent_missing"}
        t += timedelta(days=1)
        for st in view.steps:
            if st.state == "open":
                with db.transaction() as s:
                    complete_step(
                        s,
                        actor=cm,
                        reference=ref,
                        step_key=st.key,
                        outcome=OUTCOME.get(st.key),
                        now=t,
                    )
        advance(db, cm, ref, now=t)
    assert view.status == "closed"
    assert all(st.state == "done" for st in view.steps)
    with db.read() as s:
        for partner in ("ihk.hoffmann", "afa.becker", "vbw.schulz", "stadt.weber"):
            assert partner_queue(s, actor=actors[partner]) == []
            with pytest.raises(NotFoundError):
                case_view(s, actor=actors[partner], reference=ref)


# --- the command line --------------------------------------------------------------------------


def test_export_erase_access_log_and_retention_from_the_command_line(cli, db, actors, tmp_path):
    ref = start_case(db, actors["cm.mueller"], now=NOW, family_name="Kommandozeile")
    code, _out, err = cli("case", "show", ref, "--as", "cm.mueller")
    assert code == 0, err
    # Export: JSON to a folder, HTML to a file; partners are refused.
    code, _out, err = cli("export", ref, "--as", "cm.mueller", "-o", str(tmp_path))
    assert code == 0, err
    data = json.loads((tmp_path / f"auskunft-{ref}.json").read_text(encoding="utf-8"))
    assert data["person"]["family_name"] == "Kommandozeile"
    code, _out, err = cli(
        "export",
        ref,
        "--as",
        "cm.mueller",
        "-f",
        "html",
        "-l",
        "en",
        "-o",
        str(tmp_path / "x.html"),
    )
    assert code == 0 and "Your details" in (tmp_path / "x.html").read_text(encoding="utf-8")
    code, _out, err = cli("export", ref, "--as", "stadt.weber")
    assert code == 1 and "Only case managers" in err
    # Who looked: the case page and the export, by the case manager.
    code, out, err = cli("access-log", ref, "--as", "cm.mueller", "--json")
    assert code == 0, err
    assert {(r["actor"], r["purpose"]) for r in json.loads(out)} == {
        ("cm.mueller", "case"),
        ("cm.mueller", "export"),
    }
    # Erasure: refused for a case manager and for a wrong confirmation, then done.
    code, _out, err = cli("erase", ref, "--as", "cm.mueller", "--confirm", ref)
    assert code == 1 and "Only administrators" in err
    code, _out, err = cli("erase", ref, "--as", "admin", "--confirm", "WO-0000-0000")
    assert code == 1 and "reference again" in err
    code, out, err = cli("erase", ref, "--as", "admin", "--confirm", ref)
    assert code == 0, err
    assert f"Erased {ref}" in out and "newcomers 1" in out
    code, out, _err = cli("erasures", ref, "--as", "admin", "--json")
    assert [row["basis"] for row in json.loads(out)] == ["request"]
    code, _out, err = cli("erasures", ref, "--as", "admin", "--forget-runs")
    assert code == 0 and "No runs to forget: inline mode starts none." in err
    code, _out, err = cli("case", "show", ref, "--as", "cm.mueller")
    assert code == 1 and "No case with reference" in err
    # Retention: nothing is due on the test data (no case ended a year ago).
    code, out, err = cli("retention", "--as", "admin", "--dry-run", "--json")
    assert code == 0 and json.loads(out) == {"due": 0}
    code, _out, err = cli("retention", "--as", "cm.mueller")
    assert code == 1 and "Only administrators" in err

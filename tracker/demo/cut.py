"""A drawn journey cut at the demo's moment: its rows as the services would have left them.

What has not happened by the cut is pending, open or in progress; each fact, consent, handoff
and message appears only once it has happened, with the audit event the services record.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeGuard

from tracker import clocks
from tracker.demo.journeys import DemoGenerator
from tracker.demo.ledger import Ledger
from tracker.demo.story import HandoffStory, StepStory, Story
from tracker.enums import ACTIVE_STEP_STATES, CaseStatus, HandoffState, Purpose, StepState
from tracker.journeys.dues import row_due_dates
from tracker.journeys.offers import HOLD_CONSENT_MISSING, offer_key
from tracker.schemas import LANGUAGES, match_key

_PENDING, _OPEN, _IN_PROGRESS, _BLOCKED, _DONE, _SKIPPED = (
    StepState.pending.value,
    StepState.open.value,
    StepState.in_progress.value,
    StepState.blocked.value,
    StepState.done.value,
    StepState.skipped.value,
)


class Cut:
    """Writes one story's rows as the services would have left them at the cut."""

    def __init__(self, gen: DemoGenerator, ledger: Ledger, story: Story) -> None:
        self.gen = gen
        self.ledger = ledger
        self.rows = ledger.rows
        self.story = story
        self.end = gen.cut
        self.newcomer_id = gen.ids.take("newcomers")
        self.case_id = gen.ids.take("cases")
        self.manager = story.manager
        self.manager_id = gen.users[story.manager]

    def happened(self, moment: datetime | None) -> TypeGuard[datetime]:
        return moment is not None and moment < self.end

    def write(self) -> None:
        s = self.story
        pathway = self.gen.pathways[s.profile]
        opened = s.opened_at
        self.event(
            opened,
            self.manager,
            "newcomer.registered",
            "newcomer",
            self.newcomer_id,
            profile=s.profile,
        )
        self.event(
            opened,
            self.manager,
            "case.opened",
            "case",
            self.case_id,
            pathway=pathway.key,
            version=pathway.version,
        )
        self.message(
            f"welcome:{self.case_id}", "welcome", opened, language=s.lang, newcomer=self.newcomer_id
        )
        self.write_consents()
        steps = [self.write_step(st) for st in s.steps]
        self.rows["steps"].extend(steps)
        finished = [st.finished for st in s.steps if self.happened(st.finished)]
        closed_at = max(finished) if finished and len(finished) == len(s.steps) else None
        if closed_at:
            self.event(closed_at, self.manager, "case.closed", "case", self.case_id)
            self.message(
                f"case_closed:{self.case_id}", "case_closed", closed_at, user=self.manager_id
            )
        self.rows["cases"].append(
            {
                "id": self.case_id,
                "reference": s.reference,
                "newcomer_id": self.newcomer_id,
                "pathway_key": pathway.key,
                "pathway_version": pathway.version,
                "case_manager_id": self.manager_id,
                "status": (CaseStatus.closed if closed_at else CaseStatus.open).value,
                "opened_at": opened,
                "closed_at": closed_at,
                "next_due": clocks.earliest(
                    *(r["due_date"] for r in steps if r["state"] in ACTIVE_STEP_STATES)
                ),
                # Demo cases are fully advanced: no advance is waiting.
                "advance_requested_at": None,
                "version": 1,
            }
        )
        self.write_newcomer()

    def write_newcomer(self) -> None:
        s = self.story
        facts = self.facts(self.end)
        self.rows["newcomers"].append(
            {
                "id": self.newcomer_id,
                "given_name": s.given,
                "family_name": s.family,
                "birth_date": s.birth,
                "nationality": s.country,
                "eu_citizen": s.profile == "eu_citizen",
                "purpose": (Purpose.study if s.profile == "student" else Purpose.work).value,
                "accelerated_procedure": s.accelerated,
                "email": f"{s.email_name}{self.newcomer_id}@example.org",
                "phone": None,
                "preferred_language": s.lang,
                "first_contact_date": s.first_contact,
                "arrival_date": facts["arrival"],
                "move_in_date": facts["move_in"],
                "permit_expiry": facts["permit_expiry"],
                "match_key": match_key(s.family, s.given, s.birth),
                "created_at": s.opened_at,
                "version": 1,
            }
        )

    def write_consents(self) -> None:
        s = self.story
        notice = s.lang if s.lang in LANGUAGES else "en"
        for org, (given_at, method) in sorted(s.consents.items(), key=lambda kv: kv[1][0]):
            if not self.happened(given_at):
                continue
            cid = self.gen.ids.take("consents")
            self.rows["consents"].append(
                {
                    "id": cid,
                    "newcomer_id": self.newcomer_id,
                    "organisation_id": self.gen.orgs[org][0],
                    "purpose": "case_sharing",
                    "method": method,
                    "notice_language": notice,
                    "given_at": given_at,
                    "recorded_by_id": self.manager_id,
                    "revoked_at": None,
                    "revoked_by_id": None,
                    "version": 1,
                }
            )
            self.event(
                given_at,
                self.manager,
                "consent.given",
                "consent",
                cid,
                organisation=org,
                method=method,
                notice_language=notice,
            )

    def write_step(self, st: StepStory) -> dict[str, Any]:
        step_id = self.gen.ids.take("steps")
        clock = st.spec.legal_clock
        legal_days, legal_months = (
            clock.length(accelerated=self.story.accelerated) if clock else (None, None)
        )
        row: dict[str, Any] = {
            "id": step_id,
            "case_id": self.case_id,
            "key": st.key,
            "position": st.position,
            "needs": list(st.spec.needs),
            "owner_org_id": self.gen.orgs[st.spec.owner][0],
            "state": _PENDING,
            "opened_at": None,
            "started_at": None,
            "done_at": None,
            "service_days": st.spec.service_days,
            "legal_basis": clock.basis if clock else None,
            "legal_days": legal_days,
            "legal_months": legal_months,
            "clock_started_at": None,
            "legal_reference": clock.reference if clock else None,
            "service_due": None,
            "legal_due": None,
            "due_date": None,
            "blocked_reason": None,
            "skip_reason": None,
            "outcome": None,
            "version": 1,
        }
        if not self.happened(st.opened):
            return row
        row.update(state=_OPEN, opened_at=st.opened)
        self.step_event(st.opened, self.manager, "step.opened", step_id, st, owner=st.spec.owner)
        handoff_id = self.write_handoffs(st, step_id, row)
        if self.happened(st.started):
            # Accepting a handoff or starting the step starts the work and the clock.
            row.update(state=_IN_PROGRESS, started_at=st.started, clock_started_at=st.started)
            if not st.offers:
                self.step_event(st.started, st.actor, "step.started", step_id, st)
        if self.happened(st.blocked):
            row.update(state=_BLOCKED, blocked_reason=st.block_reason)
            self.step_event(st.blocked, st.actor, "step.blocked", step_id, st, st.block_reason)
        if self.happened(st.resumed):
            # Resuming with a complete file restarts a clock that counts from the start.
            row.update(state=_IN_PROGRESS, blocked_reason=None, clock_started_at=st.resumed)
            self.step_event(st.resumed, st.actor, "step.resumed", step_id, st)
        if self.happened(st.finished):
            row["done_at"] = st.finished
            if st.skip_reason:
                row.update(state=_SKIPPED, skip_reason=st.skip_reason)
                self.step_event(
                    st.finished,
                    self.manager,
                    "step.skipped",
                    step_id,
                    st,
                    st.skip_reason,
                    handoff_id=handoff_id,
                )
            else:
                row.update(state=_DONE, outcome=st.outcome)
                self.step_event(
                    st.finished,
                    st.actor,
                    "step.completed",
                    step_id,
                    st,
                    outcome=st.outcome,
                    done_on=clocks.local_today(st.finished).isoformat(),
                    handoff_id=handoff_id,
                )
        self.set_dues(row, st.finished if self.happened(st.finished) else self.end)
        return row

    def set_dues(self, row: dict[str, Any], until: datetime) -> None:
        """Due dates as the services last computed them (``row_due_dates``, the clocks' one
        rule): now, or as the step finished."""
        basis = row["legal_basis"]
        # Only a clock counting from a fact or another step needs the facts known by then.
        facts = self.facts(until) if basis not in (None, "opened", "started") else {}
        service, legal, earliest = row_due_dates(row, facts)
        row.update(service_due=service, legal_due=legal, due_date=earliest)

    def write_handoffs(self, st: StepStory, step_id: int, step_row: dict[str, Any]) -> int | None:
        """The step's handoffs made by the cut, each in its state then; returns the last id."""
        live: dict[str, Any] | None = None
        owner = st.spec.owner
        for offer in st.offers:
            if not self.happened(offer.created_at):
                break
            org_id = self.gen.orgs[offer.org][0]
            live = self.write_handoff(st, step_id, offer, org_id)
            if offer.org != owner:
                # Handing the step to another organisation makes that organisation its owner.
                step_row["owner_org_id"] = org_id
                changed = {"from": owner, "to": offer.org}
                self.step_event(
                    offer.created_at, self.manager, "step.owner_changed", step_id, st, **changed
                )
                owner = offer.org
        if live is None:
            return None
        if self.happened(st.finished) and live["state"] != HandoffState.declined.value:
            # The live handoff ends with the step: completed by the partner, or withdrawn.
            if st.skip_reason:
                live.update(state=HandoffState.withdrawn.value, reason="step_skipped")
            else:
                live["state"] = HandoffState.completed.value
            live["closed_at"] = st.finished
        return int(live["id"])

    def write_handoff(
        self, st: StepStory, step_id: int, offer: HandoffStory, org_id: int
    ) -> dict[str, Any]:
        hid = self.gen.ids.take("handoffs")
        row: dict[str, Any] = {
            "id": hid,
            "case_id": self.case_id,
            "step_id": step_id,
            "organisation_id": org_id,
            "state": HandoffState.offered.value,
            "hold_reason": None,
            "reason": None,
            "created_at": offer.created_at,
            "offered_at": None,
            "accepted_at": None,
            "closed_at": None,
            "created_by_id": self.manager_id,
            "accepted_by_id": None,
            "version": 1,
        }
        self.rows["handoffs"].append(row)
        details = {"step": st.key, "organisation": offer.org}
        if offer.held:
            row.update(state=HandoffState.held.value, hold_reason=HOLD_CONSENT_MISSING)
            self.event(
                offer.created_at,
                self.manager,
                "handoff.held",
                "handoff",
                hid,
                HOLD_CONSENT_MISSING,
                **details,
            )
            self.tell_manager("handoff_held", hid, offer.created_at, details)
        if not self.happened(offer.offered_at):
            return row
        row.update(state=HandoffState.offered.value, hold_reason=None, offered_at=offer.offered_at)
        action = "handoff.released" if offer.held else "handoff.offered"
        self.event(offer.offered_at, self.manager, action, "handoff", hid, **details)
        self.message(
            offer_key(hid, offer.created_at, offer.offered_at),
            "handoff_offered",
            offer.offered_at,
            org=org_id,
            context={"step": st.key, "handoff_id": hid},
        )
        if self.happened(offer.declined_at):
            row.update(
                state=HandoffState.declined.value, reason=offer.reason, closed_at=offer.declined_at
            )
            self.event(
                offer.declined_at,
                offer.actor,
                "handoff.declined",
                "handoff",
                hid,
                offer.reason,
                **details,
            )
            self.tell_manager("handoff_declined", hid, offer.declined_at, details)
        elif self.happened(offer.accepted_at):
            row.update(
                state=HandoffState.accepted.value,
                accepted_at=offer.accepted_at,
                accepted_by_id=self.gen.users.get(offer.actor),
            )
            self.event(
                offer.accepted_at, offer.actor, "handoff.accepted", "handoff", hid, **details
            )
        return row

    # -- helpers -----------------------------------------------------------------------------

    def facts(self, until: datetime) -> dict[str, Any]:
        """The newcomer's facts and done steps as known before ``until``."""
        s = self.story
        facts: dict[str, Any] = {
            "arrival": s.arrival if self.known(s.arrival_known, until) else None,
            "permit_expiry": s.permit_expiry if self.known(s.permit_known, until) else None,
            "move_in": None,
        }
        for st in s.steps:
            if st.done and self.known(st.finished, until):
                facts[f"done:{st.key}"] = st.finished
                if st.key == "housing":
                    facts["move_in"] = clocks.local_today(st.finished)
        return facts

    @staticmethod
    def known(moment: datetime | None, until: datetime) -> TypeGuard[datetime]:
        return moment is not None and moment < until

    def step_event(
        self,
        when: datetime,
        actor: str,
        action: str,
        step_id: int,
        st: StepStory,
        reason: str | None = None,
        **details: Any,
    ) -> None:
        self.event(when, actor, action, "step", step_id, reason, step=st.key, **details)

    def tell_manager(self, kind: str, hid: int, when: datetime, details: dict[str, str]) -> None:
        """The message the services send the case manager about a handoff (held, declined)."""
        self.message(f"{kind}:{hid}", kind, when, user=self.manager_id, context=details)

    def event(
        self,
        when: datetime,
        actor: str,
        action: str,
        etype: str,
        eid: int | None,
        reason: str | None = None,
        **details: Any,
    ) -> None:
        self.ledger.event(when, actor, action, etype, eid, self.case_id, reason, **details)

    def message(
        self,
        key: str,
        kind: str,
        when: datetime,
        *,
        language: str = "de",
        context: dict[str, Any] | None = None,
        org: int | None = None,
        user: int | None = None,
        newcomer: int | None = None,
    ) -> None:
        """A message about this case: its reference comes along, as the services send it."""
        self.ledger.message(
            key,
            kind,
            when,
            case_id=self.case_id,
            context={"reference": self.story.reference, **(context or {})},
            language=language,
            org=org,
            user=user,
            newcomer=newcomer,
        )

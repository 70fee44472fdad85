"""FIT@THGA offers: places, the waiting list (never oversold), registrations and attendance."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor, partner_sees_participant
from tracker.clocks import utcnow
from tracker.enums import PLACE_HOLDING, FitStatus, OfferKind, OfferStatus, RegistrationStatus
from tracker.errors import InvalidTransition, NotFoundError, ValidationFailed
from tracker.fit.common import (
    clean_text,
    get_offer,
    get_participant,
    offer_context,
    record_event,
    require_programme_staff,
    to_student,
)
from tracker.models import FitOffer, FitParticipant, FitRegistration
from tracker.records import check_version

# A registration that still stands: a place, or a turn on the waiting list.
OPEN_REGISTRATION = (RegistrationStatus.registered, RegistrationStatus.waitlisted)


def create_offer(
    session: Session,
    *,
    actor: Actor,
    kind: OfferKind,
    title: str,
    starts_at: datetime,
    ends_at: datetime,
    place: str,
    capacity: int,
    company: str | None = None,
    now: datetime | None = None,
) -> FitOffer:
    require_programme_staff(actor, "plan offers")
    now = now or utcnow()
    if ends_at <= starts_at:
        raise ValidationFailed("An offer must end after it starts.")
    if not 1 <= capacity <= 10_000:
        raise ValidationFailed("capacity must be between 1 and 10,000 places.")
    offer = FitOffer(
        kind=OfferKind(kind),
        title=clean_text(title, "title"),
        starts_at=starts_at,
        ends_at=ends_at,
        place=clean_text(place, "place"),
        company=clean_text(company, "company") if company and company.strip() else None,
        capacity=capacity,
        status=OfferStatus.planned,
        created_at=now,
    )
    session.add(offer)
    session.flush()
    record_event(
        session,
        actor,
        "fit.offer_created",
        "fit_offer",
        offer.id,
        now,
        kind=str(kind),
        capacity=capacity,
    )
    return offer


def places_taken(session: Session, offer_id: int) -> int:
    """Places handed out on the offer: registered, attended or no-show."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(FitRegistration)
            .where(
                FitRegistration.offer_id == offer_id,
                FitRegistration.status.in_([s.value for s in PLACE_HOLDING]),
            )
        )
        or 0
    )


def _waiting(session: Session, offer_id: int) -> list[FitRegistration]:
    return list(
        session.scalars(
            select(FitRegistration)
            .where(
                FitRegistration.offer_id == offer_id,
                FitRegistration.status == RegistrationStatus.waitlisted,
            )
            .order_by(FitRegistration.registered_at, FitRegistration.id)
        )
    )


def promote_waiting(session: Session, actor: Actor, offer: FitOffer, now: datetime) -> list[int]:
    """Give free places to the waiting list in the order people registered.

    The list's order decides, not the actor: a place freed by a partner goes to the next in
    line even if that student is not one the partner may see (who it was is not shown)."""
    free = offer.capacity - places_taken(session, offer.id)
    promoted: list[int] = []
    for registration in _waiting(session, offer.id):
        if len(promoted) >= free:
            break
        participant = session.get(FitParticipant, registration.participant_id)
        if participant is None or participant.status != FitStatus.enrolled:
            continue  # no longer studying: the next in line gets the place
        registration.status = RegistrationStatus.registered
        registration.placed_at = now
        registration.updated_at = now
        promoted.append(registration.id)
        record_event(
            session,
            actor,
            "fit.moved_up",
            "fit_registration",
            registration.id,
            now,
            case_id=participant.case_id,
            offer_id=offer.id,
        )
        to_student(
            session,
            participant,
            key=f"fit_place:{registration.id}:{clocks.local_today(now).isoformat()}",
            kind="fit_place_freed",
            context=offer_context(offer),
            now=now,
        )
    return promoted


def change_capacity(
    session: Session,
    *,
    actor: Actor,
    offer_id: int,
    capacity: int,
    expected_version: int | None = None,
    now: datetime | None = None,
) -> FitOffer:
    """More places move the waiting list up; fewer never take a place anyone already has."""
    require_programme_staff(actor, "change offers")
    now = now or utcnow()
    offer = get_offer(session, offer_id, lock=True)
    check_version(offer, expected_version, f"Offer {offer_id}")
    taken = places_taken(session, offer.id)
    if capacity < taken:
        raise ValidationFailed(
            "{taken} people already have a place; the capacity cannot go below that.",
            taken=taken,
        )
    before = offer.capacity
    offer.capacity = capacity
    promoted = promote_waiting(session, actor, offer, now)
    record_event(
        session,
        actor,
        "fit.capacity_changed",
        "fit_offer",
        offer.id,
        now,
        before=before,
        after=capacity,
        moved_up=len(promoted),
    )
    return offer


def cancel_offer(
    session: Session, *, actor: Actor, offer_id: int, reason: str, now: datetime | None = None
) -> FitOffer:
    """Call a planned offer off: every place and waiting-list turn on it goes with it."""
    require_programme_staff(actor, "cancel offers")
    now = now or utcnow()
    offer = get_offer(session, offer_id, lock=True)
    if offer.status != OfferStatus.planned:
        raise InvalidTransition(
            "The offer is {status}; only a planned one can be cancelled.",
            status=offer.status,
        )
    offer.status = OfferStatus.cancelled
    for registration in session.scalars(
        select(FitRegistration).where(
            FitRegistration.offer_id == offer.id,
            FitRegistration.status.in_(OPEN_REGISTRATION),
        )
    ):
        registration.status = RegistrationStatus.cancelled
        registration.updated_at = now
    record_event(
        session,
        actor,
        "fit.offer_cancelled",
        "fit_offer",
        offer.id,
        now,
        reason=clean_text(reason, "reason", limit=500),
    )
    return offer


def register(
    session: Session,
    *,
    actor: Actor,
    offer_id: int,
    participant_id: int,
    now: datetime | None = None,
) -> FitRegistration:
    """A place if one is free, otherwise the end of the waiting list. Never oversold."""
    require_programme_staff(actor, "register students")
    now = now or utcnow()
    offer = get_offer(session, offer_id, lock=True)
    participant = get_participant(session, participant_id, actor=actor)
    if participant.status != FitStatus.enrolled:
        raise InvalidTransition(
            "The participant is {status}, no longer enrolled: only enrolled students can register.",
            status=participant.status,
        )
    if offer.status != OfferStatus.planned:
        raise InvalidTransition(
            "The offer is {status}; registration is closed.",
            status=offer.status,
        )
    if offer.starts_at <= now:
        raise InvalidTransition("The offer has already started; registration is closed.")
    existing = session.scalar(
        select(FitRegistration).where(
            FitRegistration.offer_id == offer.id, FitRegistration.participant_id == participant.id
        )
    )
    if existing is not None and existing.status != RegistrationStatus.cancelled:
        raise InvalidTransition(
            "The participant is already {status} for this offer.",
            status=existing.status,
        )
    has_place = places_taken(session, offer.id) < offer.capacity
    status = RegistrationStatus.registered if has_place else RegistrationStatus.waitlisted
    if existing is None:
        registration = FitRegistration(offer_id=offer.id, participant_id=participant.id)
        session.add(registration)
    else:
        registration = existing  # registering again after cancelling: to the back of the line
    registration.status = status
    registration.registered_at = now
    registration.placed_at = now if has_place else None
    registration.updated_at = now
    session.flush()
    record_event(
        session,
        actor,
        f"fit.{status}",
        "fit_registration",
        registration.id,
        now,
        case_id=participant.case_id,
        offer_id=offer.id,
    )
    return registration


def drop_registration(
    session: Session, *, actor: Actor, registration: FitRegistration, reason: str, now: datetime
) -> None:
    """Cancel a place or a waiting-list turn; a freed place goes to the waiting list.

    For services that already checked the actor and the registration's state."""
    had_place = registration.status == RegistrationStatus.registered
    registration.status = RegistrationStatus.cancelled
    registration.updated_at = now
    participant = session.get(FitParticipant, registration.participant_id)
    record_event(
        session,
        actor,
        "fit.registration_cancelled",
        "fit_registration",
        registration.id,
        now,
        case_id=participant.case_id if participant else None,
        reason=reason,
        offer_id=registration.offer_id,
    )
    if had_place:
        session.flush()
        promote_waiting(session, actor, get_offer(session, registration.offer_id), now)


def cancel_registration(
    session: Session,
    *,
    actor: Actor,
    registration_id: int,
    reason: str = "cancelled by the student",
    now: datetime | None = None,
) -> FitRegistration:
    """Give a place (or a waiting-list turn) back; the next on the waiting list moves up."""
    require_programme_staff(actor, "cancel registrations")
    now = now or utcnow()
    registration = session.scalar(
        select(FitRegistration)
        .join(FitParticipant, FitRegistration.participant_id == FitParticipant.id)
        .where(FitRegistration.id == registration_id, partner_sees_participant(actor))
    )
    if registration is None:
        raise NotFoundError(
            "No registration {registration}.",
            registration=registration_id,
        )
    get_offer(session, registration.offer_id, lock=True)
    session.refresh(registration)
    if registration.status not in OPEN_REGISTRATION:
        raise InvalidTransition(
            "The registration is {status}; nothing to cancel.",
            status=registration.status,
        )
    drop_registration(
        session,
        actor=actor,
        registration=registration,
        reason=clean_text(reason, "reason", limit=500),
        now=now,
    )
    return registration


def record_attendance(
    session: Session,
    *,
    actor: Actor,
    offer_id: int,
    attended: Iterable[int],
    walk_ins: Iterable[int] = (),
    now: datetime | None = None,
) -> FitOffer:
    """After the offer: who came (participant ids); the others with a place did not show.

    ``walk_ins`` are participants who came without a place (a job fair is open to all): they
    are recorded as attended. Marks the offer as held. Can be corrected by calling it again.
    A partner records only the participants it may see: naming another is answered as for a
    missing participant, and the places of those it may not see are left as they are."""
    require_programme_staff(actor, "record attendance")
    now = now or utcnow()
    offer = get_offer(session, offer_id, lock=True)
    if offer.status == OfferStatus.cancelled:
        raise InvalidTransition("The offer was cancelled; nobody attended it.")
    if offer.starts_at > now:
        raise InvalidTransition("Attendance can be recorded once the offer has started.")
    came, walked_in = set(attended), set(walk_ins)
    named = came | walked_in
    seen = set(
        session.scalars(
            select(FitParticipant.id).where(
                FitParticipant.id.in_(named), partner_sees_participant(actor)
            )
        )
    )
    if hidden := named - seen:
        raise NotFoundError(
            "No FIT participant {participant}.",
            participant=min(hidden),
        )
    holders = {
        r.participant_id: r
        for r in session.scalars(
            select(FitRegistration)
            .join(FitParticipant, FitRegistration.participant_id == FitParticipant.id)
            .where(
                FitRegistration.offer_id == offer.id,
                FitRegistration.status.in_([s.value for s in PLACE_HOLDING]),
                partner_sees_participant(actor),
            )
        )
    }
    unknown = came - set(holders)
    if unknown:
        raise ValidationFailed(
            "Participants {participants} had no place on this offer; record them as "
            "walk-ins or register them first.",
            participants=", ".join(str(p) for p in sorted(unknown)),
        )
    for participant_id in walked_in - set(holders):
        participant = get_participant(session, participant_id, actor=actor)
        existing = session.scalar(
            select(FitRegistration).where(
                FitRegistration.offer_id == offer.id,
                FitRegistration.participant_id == participant.id,
            )
        )
        registration = existing or FitRegistration(
            offer_id=offer.id, participant_id=participant.id, registered_at=now
        )
        registration.status = RegistrationStatus.attended
        registration.placed_at = registration.placed_at or now
        registration.updated_at = now
        session.add(registration)
        record_event(
            session,
            actor,
            "fit.walk_in",
            "fit_participant",
            participant.id,
            now,
            case_id=participant.case_id,
            offer_id=offer.id,
        )
    for participant_id, registration in holders.items():
        status = (
            RegistrationStatus.attended if participant_id in came else RegistrationStatus.no_show
        )
        if registration.status != status:
            registration.status = status
            registration.updated_at = now
    offer.status = OfferStatus.held
    record_event(
        session,
        actor,
        "fit.attendance",
        "fit_offer",
        offer.id,
        now,
        attended=len(came),
        no_show=len(holders) - len(came),
    )
    return offer

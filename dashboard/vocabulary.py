"""Words the pages translate from data (states, roles, actions, fields ...), listed once so that
Babel's extraction finds them and a missing translation fails the tests."""

from __future__ import annotations


def N_(text: str) -> str:
    return text


PATHWAYS = [N_("skilled_worker"), N_("student"), N_("eu_citizen")]
ROLES = [N_("case_manager"), N_("partner_agent"), N_("leadership"), N_("admin")]
CASE_STATUSES = [N_("open"), N_("closed"), N_("cancelled")]
ORG_KINDS = [N_("core"), N_("network"), N_("external")]
CONSENT_METHODS = [
    N_("signed_form"),
    N_("online_form"),
    N_("email"),
    N_("verbal_documented"),
]
OUTCOMES = [
    N_("full"),
    N_("partial"),
    N_("none"),
    N_("approved"),
    N_("refused"),
    N_("granted"),
    N_("issued"),
    N_("fiktionsbescheinigung"),
    N_("started"),
    N_("probation_passed"),
    N_("ended_early"),
    N_("not_recorded"),  # a recognition decision without an outcome (leadership figures)
]
# Why a newcomer came (tracker.enums.Purpose), shown among a case's facts.
PURPOSES = [N_("work"), N_("study")]
# FIT@THGA's kinds of offer (tracker.enums.OfferKind), as the outcome figures name them.
FIT_OFFER_KINDS = [
    N_("application_training"),
    N_("salary_training"),
    N_("work_culture_seminar"),
    N_("excursion"),
    N_("job_fair"),
    N_("working_student_placement"),
]
# Step keys from tracker/pathways/catalogue.yaml (the outcome figures name steps by key).
STEPS = [
    N_("recognition"),
    N_("job_offer"),
    N_("visa"),
    N_("housing"),
    N_("registration"),
    N_("tax_id"),
    N_("bank_account"),
    N_("health_insurance"),
    N_("residence_title"),
    N_("integration_course"),
    N_("fit_enrollment"),
    N_("job_entry"),
]
# How far a cohort got with a step (the funnel on the outcomes page).
FUNNEL = [N_("done"), N_("active"), N_("skipped"), N_("not reached")]
FIELDS = [
    N_("given_name"),
    N_("family_name"),
    N_("birth_date"),
    N_("nationality"),
    N_("eu_citizen"),
    N_("purpose"),
    N_("accelerated_procedure"),
    N_("email"),
    N_("phone"),
    N_("preferred_language"),
    N_("first_contact_date"),
    N_("arrival_date"),
    N_("move_in_date"),
    N_("permit_expiry"),
]
ACTIONS = [
    N_("case.cancelled"),
    N_("case.closed"),
    N_("case.opened"),
    N_("case.reassigned"),
    N_("clock.reminder"),
    N_("clock.escalation"),
    N_("clock.handoff_unanswered"),
    N_("consent.given"),
    N_("consent.revoked"),
    N_("flow.failed"),
    N_("handoff.accepted"),
    N_("handoff.completed"),
    N_("handoff.declined"),
    N_("handoff.held"),
    N_("handoff.offered"),
    N_("handoff.released"),
    N_("handoff.returned"),
    N_("handoff.withdrawn"),
    N_("newcomer.registered"),
    N_("newcomer.updated"),
    N_("outbox.retried"),
    N_("person.exported"),
    N_("person.erased"),
    N_("case.anonymised"),
    N_("step.blocked"),
    N_("step.completed"),
    N_("step.opened"),
    N_("step.owner_changed"),
    N_("step.resumed"),
    N_("step.skipped"),
    N_("step.started"),
    # FIT@THGA (tracker/fit): its events carry the case of the student.
    N_("fit.attendance"),
    N_("fit.capacity_changed"),
    N_("fit.contact"),
    N_("fit.enrolled"),
    N_("fit.job"),
    N_("fit.job_entry"),
    N_("fit.moved_up"),
    N_("fit.offer_cancelled"),
    N_("fit.offer_created"),
    N_("fit.permit"),
    N_("fit.registration_cancelled"),
    N_("fit.walk_in"),
    N_("fit.work_days"),
    N_("fit.work_days_removed"),
    N_("fit.registered"),
    N_("fit.waitlisted"),
    N_("fit.graduated"),
    N_("fit.dropped_out"),
    N_("fit.withdrawn"),
]
# Why someone viewed a person (tracker/privacy/access_log.py PURPOSES, shown as access_<purpose>).
ACCESS_PURPOSES = [
    N_("access_case"),
    N_("access_list"),
    N_("access_queue"),
    N_("access_timeline"),
    N_("access_export"),
    N_("access_fit"),
]
# What a message is about (tracker outbox kinds, templates/messages/<kind>.*), shown as
# message_<kind> on the admin's list of failed messages.
MESSAGE_KINDS = [
    N_("message_welcome"),
    N_("message_reminder"),
    N_("message_escalation"),
    N_("message_digest"),
    N_("message_case_closed"),
    N_("message_handoff_offered"),
    N_("message_handoff_held"),
    N_("message_handoff_declined"),
    N_("message_handoff_returned"),
    N_("message_handoff_unanswered"),
    N_("message_fit_day_limit"),
    N_("message_fit_day_limit_manager"),
    N_("message_fit_feedback"),
    N_("message_fit_offer_reminder"),
    N_("message_fit_permit_ending"),
    N_("message_fit_place_freed"),
]
# Why a tombstone exists: the person's request (Art. 17) or the retention period.
ERASURE_BASES = [N_("request"), N_("retention")]
# UI words the views translate inside f-strings. On Python 3.11 Babel cannot see a `_()` call in
# an f-string, so they are listed here until the views move them out (admin.py, person.py).
IN_FSTRINGS = [
    N_("days"),
    N_("months"),
    N_("status"),
    N_("case manager"),
    N_("Open the Prefect UI"),
]

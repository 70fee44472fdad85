"""FIT@THGA: the programme for international students inside the tracker.

Its services live in ``participants`` (enrolment, status, job entry), ``offers`` (places, the
waiting list, attendance), ``work_days`` (the 140/280-day limit), ``permits``, ``contacts`` and
``daily`` (the morning's messages), with what they share in ``common``; its reads in
``queries``. The services are gathered here as the programme's interface, so callers write
``from tracker import fit`` and ``fit.enrol(...)``.
"""

from tracker.fit.common import FIT_STEP, PROGRAMME_ORG, require_programme_staff
from tracker.fit.contacts import add_contact
from tracker.fit.daily import send_daily
from tracker.fit.offers import (
    cancel_offer,
    cancel_registration,
    change_capacity,
    create_offer,
    promote_waiting,
    record_attendance,
    register,
)
from tracker.fit.participants import change_status, enrol, record_job_entry
from tracker.fit.permits import JOB_SEARCH_MONTHS, add_permit
from tracker.fit.work_days import (
    DAY_LIMIT,
    DayCount,
    add_job,
    day_count,
    record_work_days,
)

__all__ = [
    "DAY_LIMIT",
    "FIT_STEP",
    "JOB_SEARCH_MONTHS",
    "PROGRAMME_ORG",
    "DayCount",
    "add_contact",
    "add_job",
    "add_permit",
    "cancel_offer",
    "cancel_registration",
    "change_capacity",
    "change_status",
    "create_offer",
    "day_count",
    "enrol",
    "promote_waiting",
    "record_attendance",
    "record_job_entry",
    "record_work_days",
    "register",
    "require_programme_staff",
    "send_daily",
]

"""The message contexts as the services write them to the outbox, for every kind and every step
of every pathway, and a reader for the HTML a message renders to.

Shared by the rendering tests (tests/unit/test_messages.py) and by the test that drives every
service that writes to the outbox on a real database and compares its rows with this table
(``test_the_contexts_here_are_the_ones_the_services_enqueue`` in tests/test_messages.py), so
that the table is not taken on trust.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from tracker.messages.rendering import HTML_LAYOUT, MESSAGES_DIR
from tracker.pathway import Pathway, PathwayStep, get_registry

REQUIRED = ("de", "en")
REFERENCE = "WO-7K3M-Q9XA"
DUE = date(2026, 3, 16)
DAY = date(2026, 3, 2)
TEMPLATE_NAME = re.compile(r"^(?P<kind>[a-z][a-z0-9_]*)\.(?P<lang>[a-z]{2,3}(_[A-Z]{2})?)\.txt$")


def evaluated(text: str) -> bool:
    """Whether "{{ 7*7 }}" was evaluated somewhere: a 49 standing alone (a case reference such
    as WO-49AB-… may hold the digits, next to letters or a hyphen)."""
    return re.search(r"(?<![\w-])49(?![\w-])", text) is not None


# --- what is on disk -------------------------------------------------------------------------


def template_files() -> tuple[dict[str, set[str]], list[str]]:
    """Message kinds with the languages they have files for, and files named wrongly."""
    found: dict[str, set[str]] = {}
    misnamed = []
    for path in sorted(MESSAGES_DIR.iterdir()):
        if path.name == Path(HTML_LAYOUT).name:
            continue
        match = TEMPLATE_NAME.match(path.name)
        if not match:
            misnamed.append(path.name)
            continue
        found.setdefault(match["kind"], set()).add(match["lang"])
    return found, misnamed


FILES, MISNAMED = template_files()
KINDS = sorted(FILES)
PAIRS = [(kind, lang) for kind in KINDS for lang in sorted(set(REQUIRED) | FILES[kind])]
PATHWAYS = sorted(get_registry().pathways.values(), key=lambda p: (p.key, p.version))


# --- the contexts, as the services write them -------------------------------------------------


def _plain(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    # cases.open_case (welcome) and advance (case_closed)
    return [{"reference": REFERENCE}]


def _offered(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    # offers.notify_offer
    return [{"reference": REFERENCE, "step": step.id, "handoff_id": 17}]


def _to_manager(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    # offers.announce_handoff (handoff_held); handoffs tells the manager (declined, returned)
    return [{"reference": REFERENCE, "step": step.id, "organisation": step.owner}]


def _clock(threshold: str) -> Callable[[Pathway, PathwayStep], list[dict[str, Any]]]:
    # sweep.sweep_clocks: reminders before the due date, escalations after it
    def build(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
        legal = step.legal_clock.reference if step.legal_clock else None
        return [
            {
                "reference": REFERENCE,
                "step": step.id,
                "step_state": state,
                "due_date": DUE.isoformat(),
                "legal_reference": legal,
                "threshold": threshold,
            }
            for state in ("open", "in_progress", "blocked")
        ]

    return build


def _unanswered(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    # sweep.sweep_handoffs
    return [
        {
            "reference": REFERENCE,
            "step": step.id,
            "organisation": step.owner,
            "handoff_id": 17,
            "offered_on": DAY.isoformat(),
            "days_waiting": days,
        }
        for days in (1, 6)
    ]


def _digest(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    # digest.build_digests
    items = [
        {
            "reference": REFERENCE,
            "step": step.id,
            "state": "offered",
            "due_date": DUE.isoformat(),
            "due_status": "due_soon",
        },
        {
            "reference": "WO-2222-3333",
            "step": step.id,
            "state": "accepted",
            "due_date": None,
            "due_status": "none",
        },
        {
            "reference": "WO-4444-5555",
            "step": step.id,
            "state": "accepted",
            "due_date": (DAY - timedelta(days=3)).isoformat(),
            "due_status": "overdue",
        },
    ]
    counts = {"offered": 1, "accepted": 2, "overdue": 1, "due_soon": 1}
    return [
        {
            "organisation": step.owner,
            "day": DAY.isoformat(),
            "counts": counts,
            "total": 3 + more,
            "more": more,
            "items": items,
        }
        for more in (0, 1, 12)
    ]


FIT_OFFER_KINDS = [
    "application_training",
    "salary_training",
    "work_culture_seminar",
    "excursion",
    "job_fair",
    "working_student_placement",
]


def _fit_offer(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    # fit.common.offer_context (fit_place_freed, fit_offer_reminder, fit_feedback): UTC timestamps.
    # 22:30 UTC is already the next day in Bochum; the last offer runs over two days.
    times = [
        ("2026-05-01T22:30:00+00:00", "2026-05-01T23:15:00+00:00"),
        *[(f"2026-05-0{d}T07:00:00+00:00", f"2026-05-0{d}T15:00:00+00:00") for d in (2, 3, 4, 5)],
        ("2026-05-06T07:00:00+00:00", "2026-05-07T15:00:00+00:00"),
    ]
    return [
        {
            "offer_title": f"Karrieretag Ruhr {i + 1}",
            "offer_kind": kind,
            "starts_at": starts,
            "ends_at": ends,
            "place": "THGA, Hörsaal 2",
        }
        for i, (kind, (starts, ends)) in enumerate(zip(FIT_OFFER_KINDS, times, strict=True))
    ]


def _fit_permit(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    # fit.send_daily (fit_permit_ending)
    return [
        {"permit": permit, "valid_until": DUE.isoformat(), "days_left": days}
        for permit in ("student", "job_search", "work")
        for days in (0, 1, 45)
    ]


def _fit_days(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    # fit.warn_day_limit (fit_day_limit): used is a float, remaining 0 (int) once over
    return [
        {"year": 2025, "used": 120.5, "limit": 140, "remaining": 19.5, "level": "near"},
        {"year": 2025, "used": 140.0, "limit": 140, "remaining": 0.0, "level": "near"},
        {"year": 2025, "used": 141.0, "limit": 140, "remaining": 0, "level": "over"},
    ]


def _fit_days_manager(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    # fit.warn_day_limit (fit_day_limit_manager): the same, with the case reference
    return [{**ctx, "reference": REFERENCE} for ctx in _fit_days(pathway, step)]


CONTEXTS: dict[str, Callable[[Pathway, PathwayStep], list[dict[str, Any]]]] = {
    "welcome": _plain,
    "case_closed": _plain,
    "handoff_offered": _offered,
    "handoff_held": _to_manager,
    "handoff_declined": _to_manager,
    "handoff_returned": _to_manager,
    "reminder": _clock("due_soon"),
    "escalation": _clock("overdue"),
    "handoff_unanswered": _unanswered,
    "digest": _digest,
    "fit_place_freed": _fit_offer,
    "fit_offer_reminder": _fit_offer,
    "fit_feedback": _fit_offer,
    "fit_permit_ending": _fit_permit,
    "fit_day_limit": _fit_days,
    "fit_day_limit_manager": _fit_days_manager,
}


def contexts(kind: str, pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    if kind not in CONTEXTS:
        pytest.fail(
            f"messages/{kind}.*.txt has no context in tests/test_messages.py: add one that "
            "mirrors the enqueue call that sends it"
        )
    return CONTEXTS[kind](pathway, step)


def every_context(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """(label, context) for every step of every pathway version."""
    return [
        (f"{p.key}.v{p.version}/{s.id}#{i}", ctx)
        for p in PATHWAYS
        for s in p.steps
        for i, ctx in enumerate(contexts(kind, p, s))
    ]


# --- reading the HTML back --------------------------------------------------------------------


class HtmlView(HTMLParser):
    """What a mail client would show: the blocks of the message, the footer, every tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self._blocks: list[tuple[str, list[str]]] = []
        self.title = ""
        self.outside: list[str] = []  # text outside paragraphs and lists: the footer
        self._in: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "p":
            self._blocks.append(("p", [""]))
        elif tag == "ul":
            self._blocks.append(("ul", []))
        elif tag in ("li", "br"):
            self._blocks[-1][1].append("")
        if tag not in ("br", "meta"):
            self._in.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data: str) -> None:
        if "title" in self._in:
            self.title += data
        elif "p" in self._in or "li" in self._in:
            self._blocks[-1][1][-1] += data
        elif data.strip():
            self.outside.append(data.strip())

    def attrs(self, tag: str) -> dict[str, str | None]:
        return next(a for t, a in self.tags if t == tag)

    @property
    def blocks(self) -> list[tuple[str, list[str]]]:
        """("p" or "ul", its lines or items), as shown: without the source's line breaks."""
        return [(kind, [line.strip() for line in lines]) for kind, lines in self._blocks]

    @property
    def lines(self) -> list[str]:
        return [line for _, lines in self.blocks for line in lines if line]


def view(html: str) -> HtmlView:
    parsed = HtmlView()
    parsed.feed(html)
    parsed.close()
    return parsed


def text_lines(body: str) -> list[str]:
    return [line.strip() for line in body.split("\n") if line.strip()]

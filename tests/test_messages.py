"""Every message kind, in every language, for every step of every pathway: text and HTML.

The contexts below mirror what the services put into outbox rows. That they really do is not
taken on trust: ``test_the_contexts_here_are_the_ones_the_services_enqueue`` drives every
service that writes to the outbox on a real database and compares the rows with this table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from jinja2 import StrictUndefined, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy import func, select

from tests.conftest import NOW, Actors
from tests.helpers import advance, start_case
from tracker.config import get_settings
from tracker.db import Database
from tracker.demo import PARTNER_BY_ORG
from tracker.enums import (
    ACTIVE_STEP_STATES,
    CaseStatus,
    FitChannel,
    HandoffState,
    JobKind,
    OfferKind,
    PermitKind,
    Profile,
    Purpose,
)
from tracker.models import Case, Handoff, Organisation, OutboxMessage, Step
from tracker.pathway import Pathway, PathwayStep, get_registry
from tracker.rendering import (
    HTML_LAYOUT,
    MESSAGES_DIR,
    RenderedMessage,
    get_environment,
    html_language,
    render_message,
    step_title,
    text_direction,
)
from tracker.senders import FileSender
from tracker.services import (
    accept_handoff,
    complete_step,
    decline_handoff,
    fit,
    offer_handoff,
    return_handoff,
)
from tracker.services.delivery import deliver_pending
from tracker.services.digest import build_digests
from tracker.services.sweep import sweep_clocks, sweep_handoffs

REQUIRED = ("de", "en")
OFFICE = get_settings().office_name
REFERENCE = "WO-7K3M-Q9XA"
DUE = date(2026, 3, 16)
DAY = date(2026, 3, 2)
TEMPLATE_NAME = re.compile(r"^(?P<kind>[a-z][a-z0-9_]*)\.(?P<lang>[a-z]{2,3}(_[A-Z]{2})?)\.txt$")

# How each language greets, and words that betray a text in another language. A message in
# the wrong language (a copied file left untranslated, a fallback) fails on one of them.
GREETING = {"de": "Guten Tag,", "en": "Hello,", "ar": "تحية طيبة،"}
FOREIGN = {
    "de": ["Hello", "Please", "Thank you", " the ", " your "],
    "en": ["Guten Tag", "Bitte", "Vielen Dank", "Vorgang", "Schritt", " Sie "],
    "ar": ["Hello", "Please", " the ", "Guten Tag", "Bitte", " Sie "],
}
ARABIC_LETTER = re.compile(r"[\u0600-\u06FF]")

INJECTIONS = [
    "{{ 7*7 }}",
    "{% raw %}",
    "<script>alert(1)</script>",
    "&amp;",
    "{% if true %}yes{% endif %}",
]
PAYLOAD = " ".join(INJECTIONS)

# The only markup the layout may produce: nothing that loads from elsewhere or runs.
ALLOWED_TAGS = {"html", "head", "meta", "title", "body", "div", "p", "br", "ul", "li"}


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
    # cases.open_case (welcome) and cases._record_advance (case_closed)
    return [{"reference": REFERENCE}]


def _offered(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    # cases.notify_offer
    return [{"reference": REFERENCE, "step": step.id, "handoff_id": 17}]


def _to_manager(pathway: Pathway, step: PathwayStep) -> list[dict[str, Any]]:
    # cases._announce_handoff (handoff_held), handoffs._notify_manager (declined, returned)
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
    # fit._offer_context (fit_place_freed, fit_offer_reminder, fit_feedback): UTC timestamps.
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


# --- what every rendering must satisfy ---------------------------------------------------------


def _long_date(value: str, lang: str) -> str:
    return format_date(date.fromisoformat(value), format="long", locale=lang)


def problems(kind: str, lang: str, context: dict[str, Any], message: RenderedMessage) -> list[str]:
    """Everything wrong with one rendering; empty when it is right."""
    found = []
    shown = message.subject + "\n" + message.body
    if message.language != lang:
        found.append(f"rendered in {message.language!r} instead of {lang!r} (a fallback)")
    if not message.subject.strip() or "\n" in message.subject:
        found.append(f"bad subject {message.subject!r}")
    for raw in ("{{", "}}", "{%", "%}", "{#", "#}"):
        if raw in shown or raw in message.html:
            found.append(f"a raw placeholder {raw!r} is left")
    if re.search(r"\b(None|Undefined|undefined)\b", shown):
        found.append("an empty value shows as None/Undefined")
    if not message.body.startswith(GREETING.get(lang, "?")):
        found.append(f"does not start with the {lang} greeting {GREETING.get(lang)!r}")
    for word in FOREIGN.get(lang, []):
        if word in shown:
            found.append(f"contains {word!r}, which is not {lang}")
    if lang == "ar" and not (
        ARABIC_LETTER.search(message.subject) and ARABIC_LETTER.search(message.body)
    ):
        found.append("the Arabic message has no Arabic in its subject or body")
    if OFFICE not in message.body:
        found.append("the office is not named")
    if "reference" in context and context["reference"] not in message.subject:
        found.append("the reference is not in the subject")
    if "step" in context and step_title(context["step"], lang) not in shown:
        found.append(f"the step title {step_title(context['step'], lang)!r} is missing")
    if "organisation" in context:
        name = next(
            (o.name for o in get_registry().organisations if o.key == context["organisation"]),
            context["organisation"],
        )
        if name not in shown:
            found.append(f"the organisation {name!r} is missing")
    for key in ("due_date", "offered_on", "day"):
        if key in context and _long_date(context[key], lang) not in shown:
            found.append(f"{key} is not shown as {_long_date(context[key], lang)!r}")
    for item in context.get("items", []):
        if item["due_date"] and _long_date(item["due_date"], lang) not in shown:
            found.append(f"the digest item due on {item['due_date']} shows no date")
    found += html_problems(lang, message)
    return found


def html_problems(lang: str, message: RenderedMessage) -> list[str]:
    found = []
    page = view(message.html)
    root = page.attrs("html")
    if root.get("lang") != html_language(lang) or root.get("dir") != text_direction(lang):
        found.append(f"<html> has lang={root.get('lang')!r} dir={root.get('dir')!r}")
    if page.lines != text_lines(message.body):
        found.append("the HTML does not say what the text says, line for line")
    if page.title != message.subject:
        found.append("the HTML title is not the subject")
    if page.outside != [OFFICE]:
        found.append(f"the footer is {page.outside!r}, not the office")
    tags = {t for t, _ in page.tags}
    if tags - ALLOWED_TAGS:
        found.append(f"unexpected markup {sorted(tags - ALLOWED_TAGS)}")
    for tag, attrs in page.tags:
        if set(attrs) - {"lang", "dir", "style", "charset", "name", "content"}:
            found.append(f"<{tag}> has attributes {sorted(attrs)}")
    lowered = message.html.lower()
    for remote in ("http:", "https:", "//", "url(", "@import", "@font-face"):
        if remote in lowered:
            found.append(f"the HTML refers to something elsewhere ({remote!r})")
    return found


# --- every kind, every language, every step of every pathway ----------------------------------


def test_the_environment_is_sandboxed_strict_and_escapes_html() -> None:
    env = get_environment()
    assert isinstance(env, SandboxedEnvironment)
    assert env.undefined is StrictUndefined
    assert callable(env.autoescape)
    assert env.autoescape(HTML_LAYOUT) is True
    assert env.autoescape("messages/welcome.de.txt") is False


def test_every_kind_has_german_and_english_and_every_file_is_named_right() -> None:
    missing = sorted(
        f"messages/{kind}.{lang}.txt"
        for kind in KINDS
        for lang in REQUIRED
        if lang not in FILES[kind]
    )
    assert not missing, f"missing translations: {', '.join(missing)}"
    assert not MISNAMED, f"not named <kind>.<language>.txt: {MISNAMED}"
    for kind in KINDS:
        for lang in FILES[kind]:
            try:
                Locale.parse(lang)
            except (UnknownLocaleError, ValueError):
                pytest.fail(f"messages/{kind}.{lang}.txt: {lang!r} is not a language Babel knows")
    assert set(KINDS) == set(CONTEXTS), "a kind without a context here, or a context too many"


@pytest.mark.parametrize(("kind", "lang"), PAIRS)
def test_every_kind_renders_for_every_step_of_every_pathway(kind: str, lang: str) -> None:
    failures = []
    for label, context in every_context(kind):
        try:
            message = render_message(kind, lang, context)
        except Exception as exc:  # collected, so one run shows every broken context
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
            continue
        failures += [f"{label}: {p}" for p in problems(kind, lang, context, message)]
    assert not failures, f"{kind}.{lang}:\n" + "\n".join(failures[:40])


# Older outbox rows of handoff_unanswered carry the offer's timestamp instead of its day.
LEGACY = {"offered_at"}


def needed_values(kind: str, lang: str) -> set[str]:
    """The context values a template uses unconditionally (not behind ``is defined``)."""
    env = get_environment()
    source = (MESSAGES_DIR / f"{kind}.{lang}.txt").read_text("utf-8")
    used = meta.find_undeclared_variables(env.parse(source))
    guarded = set(re.findall(r"(\w+) is defined", source))
    assigned = set(re.findall(r"{%-?\s*set (\w+)", source))  # set inside an if: not data
    return used - set(env.globals) - guarded - assigned - LEGACY


@pytest.mark.parametrize(("kind", "lang"), PAIRS)
def test_the_contexts_carry_every_value_the_templates_use(kind: str, lang: str) -> None:
    needed = needed_values(kind, lang)
    for label, context in every_context(kind):
        assert needed <= set(context), f"{label}: no {sorted(needed - set(context))}"


@pytest.mark.parametrize(("kind", "lang"), PAIRS)
def test_a_missing_value_fails_instead_of_leaving_a_gap(kind: str, lang: str) -> None:
    context = every_context(kind)[0][1]
    for key in needed_values(kind, lang):
        reduced = {k: v for k, v in context.items() if k != key}
        with pytest.raises(UndefinedError, match=key):
            render_message(kind, lang, reduced)


# --- right to left ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "direction"),
    [
        *[(lang, "rtl") for lang in ("ar", "fa", "he", "ur", "ar_EG")],
        *[(lang, "ltr") for lang in ("de", "en", "tr", "uk", "pt_BR", "pt-BR", "zz", "")],
    ],
)
def test_the_text_direction_comes_from_babel(language: str, direction: str) -> None:
    assert text_direction(language) == direction


@pytest.mark.parametrize("kind", ["welcome"])
def test_arabic_messages_are_right_to_left_and_german_ones_left_to_right(kind: str) -> None:
    context = {"reference": REFERENCE}
    arabic = render_message(kind, "ar", context)
    german = render_message(kind, "de", context)
    assert arabic.language == "ar" and german.language == "de"
    for message, lang, direction in ((arabic, "ar", "rtl"), (german, "de", "ltr")):
        page = view(message.html)
        assert page.attrs("html")["lang"] == lang
        assert page.attrs("html")["dir"] == direction
        assert page.attrs("body")["dir"] == direction
        # The box the text sits in says it again, for clients that drop <html> and <body>.
        box = page.attrs("div")
        assert box["dir"] == direction and box["lang"] == lang
        side = "right" if direction == "rtl" else "left"
        assert f"text-align: {side}" in (box["style"] or "")
    assert '<html lang="ar" dir="rtl">' in arabic.html
    assert '<html lang="de" dir="ltr">' in german.html
    assert REFERENCE in arabic.subject and REFERENCE in arabic.body


def test_the_arabic_welcome_reads_as_arabic() -> None:
    message = render_message("welcome", "ar", {"reference": REFERENCE})
    assert message.subject.startswith("مرحبًا بك في بوخوم")
    assert "رقم ملفك هو: " + REFERENCE in message.body
    assert message.body.rstrip().endswith(OFFICE)
    letters = [c for c in message.body.replace(OFFICE, "") if c.isalpha()]
    arabic = [c for c in letters if ARABIC_LETTER.match(c)]
    assert len(arabic) / len(letters) > 0.9  # only the reference and the office are Latin


def test_a_language_with_a_region_falls_back_to_its_base_language_and_direction() -> None:
    message = render_message("welcome", "ar_EG", {"reference": REFERENCE})
    assert message.language == "ar"
    assert '<html lang="ar" dir="rtl">' in message.html


@pytest.mark.parametrize("language", ["uk", "tr", "fa", "ru_RU"])
def test_a_newcomer_language_without_templates_gets_german_first_then_english(
    language: str,
) -> None:
    message = render_message("welcome", language, {"reference": REFERENCE})
    german = render_message("welcome", "de", {"reference": REFERENCE})
    english = render_message("welcome", "en", {"reference": REFERENCE})
    assert message.subject == f"{german.subject} / {english.subject}"
    assert message.body.startswith(german.body)
    assert message.body.endswith(english.body)
    assert message.body.index("Guten Tag") < message.body.index("Hello")
    page = view(message.html)
    assert page.attrs("html")["lang"] == "de"
    sections = re.findall(r'<div lang="(\w+)" dir="(\w+)"', message.html)
    assert sections[-2:] == [("de", "ltr"), ("en", "ltr")]


def test_german_and_english_readers_get_their_language_alone() -> None:
    for language in ("de", "en", "en_GB", "de-AT"):
        message = render_message("welcome", language, {"reference": REFERENCE})
        assert " / " not in message.subject
        assert message.language == language[:2]


# --- the layout ---------------------------------------------------------------------------------


def test_paragraphs_line_breaks_and_lists_survive_into_html() -> None:
    offered = render_message(
        "handoff_offered", "de", {"reference": REFERENCE, "step": "registration", "handoff_id": 17}
    )
    page = view(offered.html)
    kinds = [k for k, _ in page.blocks]
    assert kinds == ["p", "p", "ul", "p", "p"]
    assert page.blocks[2][1] == [
        f"Vorgang: {REFERENCE}",
        "Schritt: Anmeldung (Wohnsitz)",
        "Übergabe-Nr.: 17",
    ]
    # A line break inside a paragraph stays a line break.
    assert page.blocks[-1][1] == ["Vielen Dank für die Zusammenarbeit", f"Ihr {OFFICE}"]
    assert page.blocks[3][1] == text_lines(offered.body)[5:8]

    digest = render_message("digest", "en", _digest(PATHWAYS[0], PATHWAYS[0].steps[0])[1])
    blocks = view(digest.html).blocks
    lists = [lines for k, lines in blocks if k == "ul"]
    assert len(lists) == 2  # the counts, then the cases
    assert lists[0][0] == "offered: 1" and len(lists[0]) == 4
    assert len(lists[1]) == 3 and all(line.startswith("WO-") for line in lists[1])


def test_the_html_loads_nothing_and_styles_inline() -> None:
    message = render_message("welcome", "ar", {"reference": REFERENCE})
    assert "<style" not in message.html and "<link" not in message.html
    assert "<img" not in message.html and "<a " not in message.html
    styled = [t for t, a in view(message.html).tags if a.get("style")]
    assert {"body", "div", "p"} <= set(styled)


# --- data stays data ------------------------------------------------------------------------------


# Free text programme staff type in (or a word we have no translation for) reaches messages too.
TEXT_FIELDS = ("offer_title", "place", "permit")


def _carries_text(kind: str) -> bool:
    context = contexts(kind, PATHWAYS[0], PATHWAYS[0].steps[0])[0]
    return bool({"reference", "items", *TEXT_FIELDS} & set(context))


# fit_day_limit carries only numbers, dates and levels: nothing typed in to inject.
TEXT_PAIRS = [(kind, lang) for kind, lang in PAIRS if _carries_text(kind)]


@pytest.mark.parametrize(("kind", "lang"), TEXT_PAIRS)
def test_injection_in_references_and_names_stays_literal_and_escaped(kind: str, lang: str) -> None:
    pathway = PATHWAYS[0]
    step = pathway.steps[0]
    context = contexts(kind, pathway, step)[0]
    if "reference" in context:
        context["reference"] = PAYLOAD
    for key in TEXT_FIELDS:  # typed in by programme staff (or a kind we have no word for)
        if key in context:
            context[key] = PAYLOAD
    for item in context.get("items", []):
        item["reference"] = PAYLOAD
    # Organisation names are typed in by an administrator: data as well.
    names = {step.owner: f"<b>Müller & Söhne</b> {PAYLOAD}"}
    message = render_message(kind, lang, context, organisation_names=names)

    text = message.subject + "\n" + message.body
    shown = "\n".join(view(message.html).lines) + "\n" + view(message.html).title
    for injection in INJECTIONS:
        assert injection in text
        assert injection in shown  # after the browser has decoded the HTML
    if "organisation" in context:
        assert names[step.owner] in text and names[step.owner] in shown
    assert not evaluated(text) and not evaluated(message.html)
    assert "yes" not in text.replace(INJECTIONS[-1], "")
    assert "<script" not in message.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html
    assert "&amp;amp;" in message.html
    assert "<b>" not in message.html
    assert {t for t, _ in view(message.html).tags} <= ALLOWED_TAGS


def test_a_body_that_looks_like_markup_or_layout_cannot_change_the_structure() -> None:
    tricky = "X\n\n  <li>fake</li>\n</p><p>"
    message = render_message("welcome", "de", {"reference": tricky})
    page = view(message.html)
    # The indented line is a list item as any other, its markup text, not markup.
    assert [t for t, _ in page.tags].count("li") == 2  # in the subject's overflow and the body
    assert "<li>fake</li>" in page.lines and "</p><p>" in page.lines
    assert "<li>fake" not in message.html and "</p><p>" not in message.html
    assert page.lines == text_lines(message.body)


# --- the table against the services ---------------------------------------------------------------

# Context values that are text someone typed in: offer titles and places (FIT@THGA).

PROFILE_FACTS: dict[Profile, dict[str, Any]] = {
    Profile.skilled_worker: {"purpose": Purpose.work},
    Profile.student: {"purpose": Purpose.study},
    Profile.eu_citizen: {"nationality": "PL"},
}
NAME = "{{ 7*7 }} <script>alert(1)</script>"


def _open_steps(db: Database, reference: str) -> list[str]:
    with db.read() as s:
        return list(
            s.scalars(
                select(Step.key)
                .join(Case)
                .where(Case.reference == reference, Step.state.in_(list(ACTIVE_STEP_STATES)))
                .order_by(Step.id)
            )
        )


def _status(db: Database, reference: str) -> CaseStatus:
    with db.read() as s:
        return s.scalars(select(Case.status).where(Case.reference == reference)).one()


def _offered(db: Database, reference: str) -> list[tuple[str, str]]:
    with db.read() as s:
        return [
            (step, org)
            for step, org in s.execute(
                select(Step.key, Organisation.key)
                .join(Handoff, Handoff.step_id == Step.id)
                .join(Organisation, Handoff.organisation_id == Organisation.id)
                .join(Case, Step.case_id == Case.id)
                .where(Case.reference == reference, Handoff.state == HandoffState.offered)
                .order_by(Step.id)
            )
        ]


def run_every_service_that_sends(db: Database, actors: Actors) -> None:
    """For every pathway: open cases (with and without consent), decline, re-offer, return,
    leave offers unanswered, sweep the clocks, send digests, and finish a case."""
    cm = actors["cm.mueller"]
    t = NOW
    for pathway in get_registry().latest():
        assert pathway.profile in PROFILE_FACTS, f"add facts for profile {pathway.profile}"
        facts = PROFILE_FACTS[pathway.profile]
        ref = start_case(
            db,
            cm,
            now=t,
            given_name=NAME,
            email=f"{pathway.key}@example.org",
            preferred_language="ar",
            **facts,
        )
        with db.read() as s:
            key = s.scalars(select(Case.pathway_key).where(Case.reference == ref)).one()
        assert key == pathway.key, f"no newcomer facts here choose pathway {pathway.key}"
        start_case(db, cm, now=t, consent_to=[], given_name="Held", **facts)  # handoff_held

        answerable = [(st, org) for st, org in _offered(db, ref) if org in PARTNER_BY_ORG]
        if answerable:
            step, org = answerable[0]
            partner = actors[PARTNER_BY_ORG[org]]
            with db.transaction() as s:
                decline_handoff(s, actor=partner, reference=ref, step_key=step, reason="r", now=t)
            with db.transaction() as s:
                offer_handoff(s, actor=cm, reference=ref, step_key=step, now=t)
            with db.transaction() as s:
                accept_handoff(s, actor=partner, reference=ref, step_key=step, now=t)
            with db.transaction() as s:
                return_handoff(s, actor=partner, reference=ref, step_key=step, reason="r", now=t)

        # The other offers stay unanswered past the acceptance period.
        later = t + timedelta(days=get_settings().handoff_accept_days + 1)
        with db.transaction() as s:
            sweep_handoffs(s, now=later)
        with db.transaction() as s:
            build_digests(s, day=later.date(), now=later)
        with db.read() as s:
            first_due = s.scalar(
                select(func.min(Step.due_date)).where(
                    Step.state.in_(list(ACTIVE_STEP_STATES)), Step.due_date.is_not(None)
                )
            )
        assert first_due is not None
        for today in (first_due - timedelta(days=1), first_due + timedelta(days=400)):
            with db.transaction() as s:
                sweep_clocks(s, today=today, now=later)

        # Work the journey to its end, which closes the case.
        for _ in range(len(pathway.steps) + 1):
            t += timedelta(days=1)
            for step in _open_steps(db, ref):
                with db.transaction() as s:
                    complete_step(s, actor=cm, reference=ref, step_key=step, now=t)
            advance(db, cm, ref, now=t)
            if _status(db, ref) == CaseStatus.closed:
                break
        assert _status(db, ref) == CaseStatus.closed


def run_the_fit_services_that_send(db: Database, actors: Actors) -> None:
    """FIT@THGA: a place freed on a full offer, the daily reminders, feedback and permit
    warnings, and the working-day warnings (near, then over the limit)."""
    cm, thga = actors["cm.mueller"], actors["thga.nowak"]
    people = []
    for i in range(2):
        ref = start_case(
            db, cm, now=NOW, purpose=Purpose.study, given_name=f"{NAME} {i}",
            email=f"fit{i}@example.net", preferred_language="ar",
        )  # fmt: skip
        for key in ("housing", "registration"):
            with db.transaction() as s:
                complete_step(s, actor=cm, reference=ref, step_key=key, now=NOW)
            advance(db, cm, ref, now=NOW)
        with db.transaction() as s:
            people.append(
                fit.enrol(
                    s, actor=cm, reference=ref, channel=FitChannel.lecturer,
                    study_programme="Maschinenbau", semester=1, now=NOW,
                ).id
            )  # fmt: skip
    starts = NOW + timedelta(days=30)
    with db.transaction() as s:
        offer = fit.create_offer(
            s, actor=thga, kind=OfferKind.job_fair, title=NAME, starts_at=starts,
            ends_at=starts + timedelta(hours=5), place=NAME, capacity=1, now=NOW,
        ).id  # fmt: skip
    with db.transaction() as s:
        first = fit.register(s, actor=thga, offer_id=offer, participant_id=people[0], now=NOW).id
        fit.register(s, actor=thga, offer_id=offer, participant_id=people[1], now=NOW)
    with db.transaction() as s:
        fit.cancel_registration(s, actor=thga, registration_id=first, now=NOW)
    with db.transaction() as s:
        fit.add_permit(
            s, actor=thga, participant_id=people[0], kind=PermitKind.student,
            valid_from=NOW.date(), valid_until=starts.date(), now=NOW,
        )  # fmt: skip
    for day in (starts.date() - timedelta(days=1), starts.date() + timedelta(days=1)):
        with db.transaction() as s:
            fit.send_daily(s, today=day, now=NOW)
    with db.transaction() as s:
        job = fit.add_job(
            s, actor=thga, participant_id=people[0], employer=NAME,
            kind=JobKind.working_student, starts_on=date(2025, 1, 1), now=NOW,
        ).id  # fmt: skip
    days = [date(2025, 1, 1) + timedelta(days=n) for n in range(200)]
    for chunk, half in ((days[:120], False), (days[120:122], True), (days[122:142], False)):
        with db.transaction() as s:
            fit.record_work_days(s, actor=thga, job_id=job, days=chunk, half=half, now=NOW)


def outbox(db: Database) -> list[OutboxMessage]:
    with db.read() as s:
        rows = list(s.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))
        s.expunge_all()
    return rows


def _types(value: Any) -> str:
    return type(value).__name__


def _shape(contexts: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Each key with the types its values take (``items.<key>`` for a digest's items)."""
    shape: dict[str, set[str]] = {}
    for context in contexts:
        for key, value in context.items():
            shape.setdefault(key, set()).add(_types(value))
            if key == "items":
                for item in value:
                    for ikey, ivalue in item.items():
                        shape.setdefault(f"items.{ikey}", set()).add(_types(ivalue))
    return shape


def test_the_contexts_here_are_the_ones_the_services_enqueue(
    db: Database, actors: Actors, tmp_path: Path
) -> None:
    run_every_service_that_sends(db, actors)
    run_the_fit_services_that_send(db, actors)
    rows = outbox(db)
    enqueued = {r.kind for r in rows}
    assert enqueued == set(KINDS), (
        f"kinds sent but without templates: {sorted(enqueued - set(KINDS))}; "
        f"templates no service sends: {sorted(set(KINDS) - enqueued)}"
    )
    with db.read() as s:
        org_names = {o.key: o.name for o in s.scalars(select(Organisation))}

    mismatches = []
    for kind in KINDS:
        table = _shape([ctx for _, ctx in every_context(kind)])
        real = _shape([r.context for r in rows if r.kind == kind])
        if set(table) != set(real):
            mismatches.append(
                f"{kind}: the services write {sorted(real)}, the table has {sorted(table)}"
            )
            continue
        for key, types in real.items():
            if not types <= table[key]:
                mismatches.append(f"{kind}.{key}: the services write {types}, not {table[key]}")
    assert not mismatches, "\n".join(mismatches)

    # And the real rows render, in every language their kind has.
    failures = []
    for row in rows:
        for lang in sorted(set(REQUIRED) | FILES[row.kind]):
            message = render_message(row.kind, lang, row.context, organisation_names=org_names)
            if message.language != lang or evaluated(message.html):
                failures.append(f"{row.idempotency_key} in {lang}")
    assert not failures, failures

    # What goes to a newcomer exists in Arabic, and arrives right to left.
    to_newcomers = {r.kind for r in rows if r.recipient_newcomer_id is not None}
    assert to_newcomers, "no message went to a newcomer"
    untranslated = sorted(k for k in to_newcomers if "ar" not in FILES[k])
    assert not untranslated, f"sent to newcomers but not in Arabic: {untranslated}"
    assert "ar" in {r.language for r in rows if r.recipient_newcomer_id is not None}

    deliver_pending(db, sender=FileSender(tmp_path), now=NOW + timedelta(days=500), limit=10_000)
    drops = [json.loads(p.read_text("utf-8")) for p in tmp_path.glob("*.json")]
    welcomes = [d for d in drops if d["kind"] == "welcome" and d["to"].endswith("@example.org")]
    assert len(welcomes) == len(get_registry().latest())
    for drop in welcomes:
        assert drop["language"] == "ar"
        assert '<html lang="ar" dir="rtl">' in drop["html"]
        assert view(drop["html"]).lines == text_lines(drop["body"])
        assert not evaluated(drop["html"]) and "<script" not in drop["html"]

"""The welcome letter: a newcomer's personal checklist as printable HTML.

Rendered through the one sandboxed environment of :mod:`tracker.messages.rendering` (which has
no public function for an arbitrary template name, so this module asks ``get_environment()`` for
``letters/welcome.{lang}.html``). Autoescape is on for ``.html``, so newcomer data stays inert.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from jinja2 import TemplateNotFound
from sqlalchemy.orm import Session

from tracker import clocks
from tracker.access import Actor
from tracker.errors import PermissionDenied
from tracker.journeys.queries import case_view
from tracker.messages.rendering import (
    FALLBACK_LANGUAGE,
    TEMPLATES_DIR,
    TemplateMissing,
    get_environment,
    template_languages,
    text_direction,
)

_STATE = {
    "done": "done",
    "skipped": "skipped",
    "open": "open",
    "in_progress": "open",
    "blocked": "open",
    "pending": "pending",
}


@dataclass(frozen=True)
class LetterStep:
    key: str
    title: str
    owner_name: str
    state: str  # done, skipped, open or pending
    legal_due: date | None
    legal_reference: str | None


def letter_languages() -> list[str]:
    """Languages with a letter template; a translator adds one by adding welcome.<lang>.html."""
    return template_languages("letters", "welcome")


def letter_language(preferred: str | None, language: str | None = None) -> str:
    """The wanted language (or the preferred one) if a letter template exists, else German."""
    wanted = (language or preferred or FALLBACK_LANGUAGE).lower()
    available = letter_languages()
    for lang in (wanted, wanted.replace("-", "_").split("_")[0]):
        if lang in available:
            return lang
    return FALLBACK_LANGUAGE


def welcome_letter(
    session: Session,
    *,
    actor: Actor,
    reference: str,
    language: str | None = None,
    today: date | None = None,
) -> str:
    """The welcome letter for one case as a complete HTML document (case managers and admins)."""
    if not actor.manages_cases:
        # case_view lets a partner see a handed-over slice; the letter is the case manager's.
        raise PermissionDenied(
            "{role} may not write welcome letters.",
            role=actor.role,
        )
    today = today or clocks.local_today()
    view = case_view(session, actor=actor, reference=reference, today=today)
    lang = letter_language(view.newcomer.get("preferred_language"), language)
    # The catalogue has German and English titles only; other languages read the English one.
    steps = [
        LetterStep(
            key=s.key,
            title=s.title_de if lang == "de" else s.title_en,
            owner_name=s.owner_name,
            state=_STATE.get(s.state, "open"),
            legal_due=s.legal_due,
            legal_reference=s.legal_reference,
        )
        for s in view.steps
    ]
    name = f"letters/welcome.{lang}.html"
    try:
        template = get_environment().get_template(name)
    except TemplateNotFound as exc:  # pragma: no cover - the three templates ship with the code
        raise TemplateMissing(
            "No letter template {name} under {folder}.",
            name=name,
            folder=TEMPLATES_DIR,
        ) from exc
    context: dict[str, Any] = {
        "given_name": view.newcomer.get("given_name", ""),
        "reference": view.reference,
        "steps": steps,
        "today": today,
    }
    # Our own names go last so nothing in the context can replace them.
    # The template holds every word, including what to bring and what a deadline means.
    return template.render({**context, "lang": lang, "rtl": text_direction(lang) == "rtl"})

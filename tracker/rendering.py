"""Every word the tracker sends goes through this one sandboxed Jinja2 environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date
from babel.numbers import format_decimal
from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, pass_context
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment

from tracker.config import get_settings
from tracker.errors import TrackerError
from tracker.pathway import get_registry

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
MESSAGES_DIR = TEMPLATES_DIR / "messages"
FALLBACK_LANGUAGE = "de"
SUBJECT_PREFIX = "Subject:"

# Kinds and languages come from outbox rows and become file names: allow nothing that could
# reach outside templates/messages.
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}([_-][A-Za-z0-9]{2,8})?$")


class RenderError(TrackerError):
    """A message could not be rendered: retrying will not help until a template is fixed."""


class TemplateMissing(RenderError):
    """No template exists for the message kind, in the wanted language or the fallback."""


@dataclass(frozen=True)
class RenderedMessage:
    subject: str
    body: str
    language: str  # the language actually rendered (after any fallback)


def _lang(ctx: Context) -> str:
    return str(ctx.get("lang") or FALLBACK_LANGUAGE)


def _as_date(value: date | datetime | str) -> date:
    """Dates arrive as date objects or, from an outbox row's JSON context, as ISO strings."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            # A timestamp is shown as the day it was in Bochum, not in UTC.
            value = value.astimezone(ZoneInfo(get_settings().timezone))
        return value.date()
    return value


@pass_context
def _date_filter(ctx: Context, value: date | datetime | str, fmt: str = "long") -> str:
    return format_date(_as_date(value), format=fmt, locale=_lang(ctx))


@pass_context
def _number_filter(ctx: Context, value: int | float) -> str:
    return format_decimal(value, locale=_lang(ctx))


def step_title(step: str, lang: str) -> str:
    """The step's title from the catalogue; an unknown step shows its key rather than failing."""
    entry = get_registry().catalogue.get(step)
    if entry is None:
        return step
    # The catalogue has German and English; a newcomer reading another language more likely
    # understands English than German.
    return entry.title.de if lang.split("_")[0].split("-")[0] == "de" else entry.title.en


@pass_context
def _step_title_filter(ctx: Context, step: str) -> str:
    return step_title(step, _lang(ctx))


@pass_context
def _organisation_name(ctx: Context, key: str) -> str:
    names: Mapping[str, str] = ctx.get("_organisation_names") or {}
    if key in names:
        return names[key]
    for seed in get_registry().organisations:
        if seed.key == key:
            return seed.name
    return key


@lru_cache(maxsize=1)
def get_environment() -> SandboxedEnvironment:
    """The one environment: sandboxed, strict about missing values, escaping only HTML."""
    env = SandboxedEnvironment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        undefined=StrictUndefined,
        autoescape=lambda name: bool(name) and name.rsplit(".", 1)[-1] in ("html", "htm"),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters["date"] = _date_filter
    env.filters["number"] = _number_filter
    env.filters["step_title"] = _step_title_filter
    env.filters["organisation_name"] = _organisation_name
    env.globals["office"] = get_settings().office_name
    return env


def _candidates(language: str) -> list[str]:
    """The wanted language, its base language (pt_BR -> pt), then the fallback."""
    langs = [language]
    base = re.split(r"[_-]", language)[0]
    if base not in langs:
        langs.append(base)
    if FALLBACK_LANGUAGE not in langs:
        langs.append(FALLBACK_LANGUAGE)
    return langs


def render_message(
    kind: str,
    language: str,
    context: Mapping[str, Any],
    *,
    organisation_names: Mapping[str, str] | None = None,
) -> RenderedMessage:
    """Render ``messages/{kind}.{language}.txt``; its first line is ``Subject: ...``.

    Context values are data: they are inserted once and never rendered again, so a value such
    as ``{{ 7*7 }}`` appears literally. ``organisation_names`` maps organisation keys to their
    current names (the registry's seed names are used otherwise).
    """
    if not _KIND.match(kind):
        raise TemplateMissing(f"{kind!r} is not a valid message kind.")
    language = language if _LANGUAGE.match(language or "") else FALLBACK_LANGUAGE
    env = get_environment()
    tried = []
    for lang in _candidates(language):
        name = f"messages/{kind}.{lang}.txt"
        tried.append(name)
        try:
            template = env.get_template(name)
        except TemplateNotFound:
            continue
        # Our own names go last so a context key can never replace them.
        text = template.render(
            {**context, "lang": lang, "_organisation_names": organisation_names or {}}
        )
        return _split(text, name, lang)
    raise TemplateMissing(
        f"No template for message kind {kind!r} in language {language!r} "
        f"(looked for {', '.join(tried)} under {TEMPLATES_DIR})."
    )


def _split(text: str, name: str, lang: str) -> RenderedMessage:
    first, _, rest = text.lstrip("\n").partition("\n")
    if not first.startswith(SUBJECT_PREFIX):
        raise RenderError(f"Template {name} must start with a line 'Subject: ...'.")
    subject = first[len(SUBJECT_PREFIX) :].strip()
    if not subject:
        raise RenderError(f"Template {name} renders an empty subject.")
    return RenderedMessage(subject=subject, body=rest.strip("\n") + "\n", language=lang)

"""Every word the tracker sends goes through this one sandboxed Jinja2 environment.

A message is one plain-text template per kind and language (``messages/{kind}.{lang}.txt``).
Its HTML alternative is not a second template: the shared layout ``messages/_layout.html``
turns the rendered text into paragraphs and lists, in the text direction of the language.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_time
from babel.numbers import format_decimal
from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound, pass_context
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import SandboxedEnvironment

from tracker.config import PROJECT_ROOT, get_settings
from tracker.errors import TrackerError
from tracker.pathway import get_registry

TEMPLATES_DIR = PROJECT_ROOT / "templates"
MESSAGES_DIR = TEMPLATES_DIR / "messages"
FALLBACK_LANGUAGE = "de"
SUBJECT_PREFIX = "Subject:"
HTML_LAYOUT = "messages/_layout.html"
# Between the German and the English text of a bilingual message.
BILINGUAL_RULE = "— English —"
# A line of a message that starts with this many spaces is a list item (see digest.*.txt).
LIST_INDENT = "  "

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
    html: str  # the same message as a complete HTML document (the e-mail's alternative)


@dataclass(frozen=True)
class Block:
    """One block of a message's HTML form: a paragraph of lines, or a list of items."""

    kind: str  # "p" or "ul"
    lines: tuple[str, ...]


def _lang(ctx: Context) -> str:
    return str(ctx.get("lang") or FALLBACK_LANGUAGE)


def _defined(value: Any) -> Any:
    """A missing value handed to a filter fails as missing (``UndefinedError``, which delivery
    parks with its reason), not as some error deep inside Babel."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return value


def _as_date(value: date | datetime | str) -> date:
    """Dates arrive as date objects or, from an outbox row's JSON context, as ISO strings."""
    value = _defined(value)
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
def _time_filter(ctx: Context, value: datetime | str, fmt: str = "short") -> str:
    """The time of day in the office's time zone (a stored UTC timestamp of 08:00 is 10:00)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone(ZoneInfo(get_settings().timezone))
    return format_time(value, format=fmt, locale=_lang(ctx))


@pass_context
def _number_filter(ctx: Context, value: int | float) -> str:
    return format_decimal(_defined(value), locale=_lang(ctx))


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
    env.filters["time"] = _time_filter
    env.filters["step_title"] = _step_title_filter
    env.filters["organisation_name"] = _organisation_name
    env.globals["office"] = get_settings().office_name
    return env


@lru_cache(maxsize=64)
def text_direction(language: str) -> str:
    """``"rtl"`` for a language written right to left (Arabic, Persian, Hebrew ...), else ``"ltr"``.

    Babel's locale data decides; a tag Babel does not know reads left to right.
    """
    try:
        order = Locale.parse(language.replace("-", "_")).character_order
    except (UnknownLocaleError, ValueError, TypeError):
        return "ltr"
    return "rtl" if order == "right-to-left" else "ltr"


def html_language(language: str) -> str:
    """The language as an HTML ``lang`` value (BCP 47 spells pt_BR as pt-BR)."""
    return language.replace("_", "-")


def text_blocks(body: str) -> list[Block]:
    """Split a plain message into paragraphs (at blank lines) and lists (indented lines).

    Lines within a paragraph stay separate lines. Indented lines form one list, also across
    blank lines between items, until a paragraph line follows.
    """
    blocks: list[Block] = []
    kind: str | None = None  # the kind of the block being filled; None after a blank line
    lines: list[str] = []

    def close() -> None:
        if kind is not None and lines:
            blocks.append(Block(kind, tuple(lines)))

    for raw in body.split("\n"):
        line = raw.rstrip()
        if not line.strip():
            if kind == "p":
                close()
                kind, lines = None, []
            continue
        wanted = "ul" if line.startswith(LIST_INDENT) else "p"
        if wanted != kind:
            close()
            kind, lines = wanted, []
        lines.append(line.strip() if wanted == "ul" else line)
    close()
    return blocks


def render_html(subject: str, body: str, language: str) -> str:
    """The HTML form of a rendered message, through the shared layout.

    ``body`` is finished text: it is escaped into the layout, never rendered again, so data in
    it (a reference such as ``{{ 7*7 }}`` or ``<script>``) stays inert.
    """
    return _render_sections(subject, [(language, body)])


def _render_sections(subject: str, sections: Sequence[tuple[str, str]]) -> str:
    """One HTML document of one or more (language, text) sections, each with its lang/dir."""
    template = get_environment().get_template(HTML_LAYOUT)
    parts = [
        {
            "blocks": text_blocks(body),
            "html_lang": html_language(lang),
            "dir": text_direction(lang),
            "rtl": text_direction(lang) == "rtl",
        }
        for lang, body in sections
    ]
    first = parts[0]
    html = template.render(
        subject=subject,
        sections=parts,
        lang=sections[0][0],
        html_lang=first["html_lang"],
        dir=first["dir"],
        rtl=first["rtl"],
    )
    return html.rstrip("\n") + "\n"  # ends in a line break, like the text


def _base(language: str) -> str:
    return re.split(r"[_-]", language)[0]


def template_languages(folder: str, stem: str, suffix: str = "html") -> list[str]:
    """The languages ``{folder}/{stem}.<lang>.{suffix}`` exists in, German first: a translator
    adds one by adding a file."""
    found = {p.name.split(".")[-2] for p in (TEMPLATES_DIR / folder).glob(f"{stem}.*.{suffix}")}
    return sorted(found, key=lambda lang: (lang != FALLBACK_LANGUAGE, lang))


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

    The result carries the text and its HTML form (see :func:`render_html`).

    Context values are data: they are inserted once and never rendered again, so a value such
    as ``{{ 7*7 }}`` appears literally. ``organisation_names`` maps organisation keys to their
    current names (the registry's seed names are used otherwise).
    """
    if not _KIND.match(kind):
        raise TemplateMissing(
            "'{kind}' is not a valid message kind.",
            kind=kind,
        )
    language = language if _LANGUAGE.match(language or "") else FALLBACK_LANGUAGE
    tried: list[str] = []
    for lang in _candidates(language):
        if lang == FALLBACK_LANGUAGE and _base(language) not in ("de", "en"):
            # No template in the reader's language yet (say Ukrainian): German and English
            # both, German first, rather than German alone.
            return render_bilingual(kind, context, organisation_names=organisation_names)
        found = _render_one(kind, lang, context, organisation_names, tried)
        if found is not None:
            subject, body = found
            return RenderedMessage(
                subject=subject, body=body, language=lang, html=render_html(subject, body, lang)
            )
    raise TemplateMissing(
        "No template for message kind '{kind}' in language '{language}' (looked for "
        "{tried} under {folder}).",
        kind=kind,
        language=language,
        tried=", ".join(tried),
        folder=TEMPLATES_DIR,
    )


def _render_one(
    kind: str,
    lang: str,
    context: Mapping[str, Any],
    organisation_names: Mapping[str, str] | None,
    tried: list[str],
) -> tuple[str, str] | None:
    """(subject, body) of ``messages/{kind}.{lang}.txt``, or None if there is no such file."""
    name = f"messages/{kind}.{lang}.txt"
    tried.append(name)
    try:
        template = get_environment().get_template(name)
    except TemplateNotFound:
        return None
    # Our own names go last so a context key can never replace them.
    text = template.render(
        {**context, "lang": lang, "_organisation_names": organisation_names or {}}
    )
    return _split(text, name)


def render_bilingual(
    kind: str,
    context: Mapping[str, Any],
    *,
    organisation_names: Mapping[str, str] | None = None,
) -> RenderedMessage:
    """German first, then English, in one message: for a newcomer whose language has no
    template yet (they may read either, and German is the language of the office)."""
    tried: list[str] = []
    de = _render_one(kind, "de", context, organisation_names, tried)
    en = _render_one(kind, "en", context, organisation_names, tried)
    if de is None or en is None:
        raise TemplateMissing(
            "Message kind '{kind}' needs German and English ({tried}).",
            kind=kind,
            tried=", ".join(tried),
        )
    subject = f"{de[0]} / {en[0]}"
    body = f"{de[1]}\n{BILINGUAL_RULE}\n\n{en[1]}"
    html = _render_sections(subject, [("de", de[1]), ("en", en[1])])
    return RenderedMessage(subject=subject, body=body, language="de", html=html)


def _split(text: str, name: str) -> tuple[str, str]:
    first, _, rest = text.lstrip("\n").partition("\n")
    if not first.startswith(SUBJECT_PREFIX):
        raise RenderError(
            "Template {name} must start with a line 'Subject: ...'.",
            name=name,
        )
    subject = first[len(SUBJECT_PREFIX) :].strip()
    if not subject:
        raise RenderError(
            "Template {name} renders an empty subject.",
            name=name,
        )
    return subject, rest.strip("\n") + "\n"

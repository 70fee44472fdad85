"""Every message kind, in every language, for every step of every pathway: text and HTML.

The contexts come from tests/message_contexts.py, which mirrors what the services put into
outbox rows; tests/test_messages.py checks that against the rows they really write.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from jinja2 import StrictUndefined, UndefinedError, meta
from jinja2.sandbox import SandboxedEnvironment

from tests.message_contexts import (
    CONTEXTS,
    FILES,
    KINDS,
    MISNAMED,
    PAIRS,
    PATHWAYS,
    REFERENCE,
    REQUIRED,
    contexts,
    evaluated,
    every_context,
    text_lines,
    view,
)
from tracker.config import get_settings
from tracker.messages.rendering import (
    HTML_LAYOUT,
    MESSAGES_DIR,
    RenderedMessage,
    get_environment,
    html_language,
    render_message,
    step_title,
    text_direction,
)
from tracker.pathway import get_registry

OFFICE = get_settings().office_name

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

    digest = render_message(
        "digest", "en", contexts("digest", PATHWAYS[0], PATHWAYS[0].steps[0])[1]
    )
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

"""One language per screen: a tracker error, the sign-in error and Streamlit's own words (a select
box's placeholder, a date input's format, the file uploader's limits) in the screen's language."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from tests.conftest import NOW
from tests.helpers import start_case
from tests.test_dashboard import app, dash
from tracker.demo.people import DEMO_PASSWORD

__all__ = ["dash"]  # the fixture, used by name below

DASHBOARD = Path(__file__).resolve().parent.parent / "dashboard"
# Words the other language would show: a German screen never says these, nor the reverse.
ENGLISH_ONLY = ("Say why", "a reason is required", "No case with reference", "Wrong username")
GERMAN_ONLY = ("Bitte angeben", "ein Grund ist nötig", "Fallnummer", "Benutzername oder")


def shown(at: AppTest) -> str:
    """The alerts' text as a reader sees it (without plain()'s escapes and word joiners)."""
    alerts = [*at.error, *at.warning, *at.success, *at.info]
    return "\n".join(str(a.value) for a in alerts).replace("\\", "").replace("\u2060", "")


def assert_one_language(text: str, lang: str) -> None:
    leaked = [w for w in (ENGLISH_ONLY if lang == "de" else GERMAN_ONLY) if w in text]
    assert not leaked, f"{leaked} on a {lang} screen: {text!r}"


def _save_from_the_screen() -> None:
    """A page that runs one tracker service through dashboard.common.change, as the case page's
    form does: the service and its arguments come from the session."""
    import streamlit as st

    from dashboard.common import change
    from tracker.journeys import handoffs, steps

    services = {"withdraw": handoffs.withdraw_handoff, "start": steps.start_step}
    kind, kwargs = st.session_state["save"]
    change(services[kind], **kwargs)


def _saved(lang: str, kind: str, **kwargs: object) -> str:
    at = AppTest.from_function(_save_from_the_screen, default_timeout=60)
    at.session_state["lang"] = lang
    at.session_state["save"] = (kind, kwargs)
    at.session_state["username"] = "cm.mueller"
    at.session_state["signed_in_at"] = datetime.now(UTC)
    at.run()
    assert not at.exception
    return shown(at)


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "de",
            "Nicht gespeichert: Bitte angeben, warum der Schritt zurückgezogen wird: "
            "ein Grund ist nötig.",
        ),
        ("en", "Not saved: Say why the step is withdrawn: a reason is required."),
    ],
)
def test_withdrawing_a_handoff_without_a_reason_is_refused_in_the_screens_language(
    dash, actors, lang, expected
):
    ref = start_case(dash, actors["cm.mueller"], now=NOW, nationality="PL")
    text = _saved(lang, "withdraw", reference=ref, step_key="housing", reason=" ")
    assert text == expected
    assert_one_language(text, lang)


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        (
            "de",
            "Nicht gespeichert: Der Schritt „Anmeldung (Wohnsitz)“ ist ausstehend; beginnen lässt "
            "sich nur ein offener oder blockierter Schritt.",
        ),
        (
            "en",
            "Not saved: Step Residence registration (Anmeldung) is pending; only an open or "
            "blocked step can be started.",
        ),
    ],
)
def test_a_refusal_names_the_step_by_its_title_and_its_state_in_words(dash, actors, lang, expected):
    ref = start_case(dash, actors["cm.mueller"], now=NOW, nationality="PL")
    assert _saved(lang, "start", reference=ref, step_key="registration") == expected


@pytest.mark.parametrize(
    ("lang", "expected"),
    [
        ("de", "Kein Fall mit der Fallnummer „{ref}“ gefunden, oder er ist Ihnen nicht übergeben."),
        ("en", "No case with reference '{ref}'."),
    ],
)
def test_a_partner_opening_a_case_not_handed_to_it_is_told_so_in_the_screens_language(
    dash, actors, lang, expected
):
    ref = start_case(dash, actors["cm.mueller"], now=NOW, consent_to=[])
    at = app("stadt.weber", page="person", lang=lang)
    at.session_state["case"] = ref
    at.run()
    assert not at.exception
    text = shown(at)
    assert expected.format(ref=ref) in text
    assert_one_language(text, lang)


@pytest.mark.parametrize(
    ("lang", "expected"),
    [("de", "Benutzername oder Passwort ist falsch."), ("en", "Wrong username or password.")],
)
def test_the_sign_in_error_is_in_the_screens_language_only(dash, lang, expected):
    at = app(lang=lang)
    at.run()
    at.text_input(key="signin_user").input("cm.mueller")
    at.text_input(key="signin_password").input("not-the-password")
    at.button(key="signin_submit").click().run()
    assert not at.exception
    assert [shown(at)] == [expected]
    # A right password still signs in after that.
    at.text_input(key="signin_password").input(DEMO_PASSWORD)
    at.button(key="signin_submit").click().run()
    assert at.session_state["username"] == "cm.mueller"


@pytest.mark.parametrize(
    ("lang", "placeholder", "day_format"),
    [("de", "Bitte wählen …", "DD.MM.YYYY"), ("en", "Choose …", "DD/MM/YYYY")],
)
def test_streamlits_own_words_are_said_in_the_screens_language(
    dash, actors, lang, placeholder, day_format
):
    ref = start_case(dash, actors["cm.mueller"], now=NOW, nationality="PL")
    at = app("cm.mueller", lang=lang)
    at.run()
    assert not at.exception
    assert at.selectbox, "My cases has its filters"
    assert {s.proto.placeholder for s in at.selectbox} == {placeholder}
    at = app("cm.mueller", page="person", lang=lang)
    at.session_state["case"] = ref
    at.run()
    assert not at.exception
    assert {s.proto.placeholder for s in at.selectbox} == {placeholder}
    dates = [d.proto.format for d in at.date_input]
    assert not dates or set(dates) == {day_format}
    at = app("admin", page="admin", lang=lang)
    at.run()
    assert not at.exception
    (uploader,) = [f for f in at.get("file_uploader") if f.key == "import_file"]
    assert uploader.proto.help == (
        "Datei auf dem Computer auswählen oder hierher ziehen."
        if lang == "de"
        else "Choose the file on your computer or drag it here."
    )
    assert uploader.proto.max_upload_size_mb == 200
    captions = [c.value for c in at.caption]
    assert (
        "Eine CSV- oder TXT-Datei mit höchstens 200 MB."
        if lang == "de"
        else "A CSV or TXT file of at most 200 MB."
    ) in captions


def _calls(attr: str) -> list[tuple[str, ast.Call]]:
    found = []
    for path in sorted(DASHBOARD.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == attr
            ):
                found.append((f"{path.relative_to(DASHBOARD)}:{node.lineno}", node))
    return found


@pytest.mark.parametrize(
    ("widget", "keyword"),
    [
        ("selectbox", "placeholder"),
        ("multiselect", "placeholder"),
        ("date_input", "format"),
        ("file_uploader", "help"),
    ],
)
def test_every_widget_says_streamlits_words_itself(widget, keyword):
    """Streamlit's defaults are English ("Choose an option", "YYYY/MM/DD", "200MB per file"):
    every such widget in dashboard/ passes its own (choose(), date_format(), a translated help)."""
    calls = _calls(widget)
    missing = [where for where, call in calls if not any(k.arg == keyword for k in call.keywords)]
    assert not missing, f"{widget} without {keyword}=: {missing}"
    if widget in ("selectbox", "date_input"):
        assert calls, f"no {widget} found: is the scan looking in the right place?"

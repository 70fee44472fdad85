"""Translations: every UI string of the dashboard in German and English, German by default.

The msgids are extracted from dashboard/ the way `pybabel extract -F babel.cfg` does, so a string
marked with `_()` or `N_()` but missing from a catalogue fails here, named with where it is used.
"""

from __future__ import annotations

import string
from collections import defaultdict
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
import streamlit as st
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from streamlit.testing.v1 import AppTest

from dashboard.i18n import LANGUAGES, LOCALES, gettext_for
from tests.conftest import NOW
from tests.helpers import start_case
from tracker.config import get_settings
from tracker.db import get_database
from tracker.enums import CaseStatus, ConsentMethod, OrgKind, Profile, Role
from tracker.journeys.queries import CASE_MANAGER_FIELDS
from tracker.pathway import get_registry
from tracker.privacy import access_log

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "dashboard"
APP = str(DASHBOARD / "app.py")
KEYWORDS = {"_": None, "N_": None}


@cache
def extracted() -> dict[str, list[str]]:
    """msgid -> where it is used ("views/person.py:42"), as Babel's extraction finds them."""
    with (ROOT / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh, str(ROOT / "babel.cfg"))
    found: dict[str, list[str]] = defaultdict(list)
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(DASHBOARD), method_map, options_map, keywords=KEYWORDS
    ):
        assert isinstance(message, str), f"{filename}:{lineno}: plural forms are not used"
        found[message].append(f"{filename}:{lineno}")
    return dict(found)


@cache
def catalogue(language: str) -> Catalog:
    with (LOCALES / language / "LC_MESSAGES" / "messages.po").open("rb") as fh:
        return read_po(fh, locale=language)


def placeholders(text: str) -> set[str]:
    return {field for _lit, field, _spec, _conv in string.Formatter().parse(text) if field}


def test_babel_cfg_finds_the_dashboard_strings():
    found = extracted()
    assert "My cases" in found  # views
    assert "Sign out" in found  # app.py
    assert "case.opened" in found  # vocabulary.py (N_)
    assert len(found) > 200


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_every_msgid_has_a_translation(language):
    cat = catalogue(language)
    missing = {
        msgid: where
        for msgid, where in sorted(extracted().items())
        if msgid not in cat or not cat[msgid].string
    }
    assert not missing, f"{len(missing)} msgids untranslated in {language}:\n" + "\n".join(
        f"  {msgid!r}  ({', '.join(where)})" for msgid, where in missing.items()
    )


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_translations_keep_their_placeholders(language):
    wrong = [
        f"  {m.id!r} -> {m.string!r}"
        for m in catalogue(language)
        if m.id and m.string and placeholders(str(m.id)) != placeholders(str(m.string))
    ]
    assert not wrong, f"placeholders differ in {language}:\n" + "\n".join(wrong)


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_catalogues_have_no_fuzzy_entries_and_a_proper_header(language):
    cat = catalogue(language)
    assert not cat.fuzzy, f"{language}: the header is marked fuzzy"
    fuzzy = [m.id for m in cat if m.id and m.fuzzy]
    assert not fuzzy, f"{language}: fuzzy entries {fuzzy}"
    assert str(cat.locale) == language
    assert cat.charset.lower() == "utf-8"
    assert cat.plural_forms == "nplurals=2; plural=(n != 1);"


def test_gettext_speaks_german_and_english():
    de, en = gettext_for("de"), gettext_for("en")
    assert de("My cases") == "Meine Fälle"
    assert en("My cases") == "My cases"
    assert de("registration") == "Anmeldung (Wohnsitz)"
    assert en("skilled_worker") == "Skilled worker"
    assert en("case.opened") == "Case opened"
    assert de("{n} cases shown, most urgent first").format(n=3).startswith("3 ")
    assert gettext_for("xx")("My cases") == "Meine Fälle"  # unknown language: German


def test_step_titles_match_the_pathway_catalogue():
    """A step named by key (outcomes page) reads the same as by its catalogue title."""
    de, en = gettext_for("de"), gettext_for("en")
    for key, entry in get_registry().catalogue.items():
        assert de(key) == entry.title.de, key
        assert en(key) == entry.title.en, key


def test_the_tracker_vocabularies_are_all_translatable():
    """Every data word a page translates at runtime is extracted (listed in vocabulary.py)."""
    registry = get_registry()
    words = {
        *(v.value for v in (*Role, *OrgKind, *CaseStatus, *ConsentMethod, *Profile)),
        *registry.catalogue,
        *(o for entry in registry.catalogue.values() for o in entry.outcomes),
        *(f for entry in registry.catalogue.values() for f in entry.partner_fields),
        *CASE_MANAGER_FIELDS,
        "not_recorded",
        *("done", "active", "skipped", "not reached"),
        *(f"access_{purpose}" for purpose in access_log.PURPOSES),
        *("request", "retention"),
    }
    missing = sorted(words - set(extracted()))
    assert not missing, f"add these to dashboard/vocabulary.py: {missing}"


# The dashboard under AppTest, as in tests/test_dashboard.py but without choosing a language.


@pytest.fixture
def dash(db, monkeypatch):
    """The dashboard pointed at the test database, advancing cases inline (no Prefect)."""
    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    monkeypatch.setenv("ONBOARDING_ORCHESTRATION", "inline")
    get_settings.cache_clear()
    get_database.cache_clear()
    # st.cache_data outlives an AppTest: the PostgreSQL test database keeps its URL from test
    # to test, so figures cached here would be served to the next test's pages.
    st.cache_data.clear()
    yield db
    st.cache_data.clear()
    get_database.cache_clear()
    get_settings.cache_clear()


def app(username: str | None = None, *, page: str | None = None, lang: str | None = None):
    at = AppTest.from_file(
        str(DASHBOARD / "views" / f"{page}.py") if page else APP, default_timeout=60
    )
    if lang is not None:
        at.session_state["lang"] = lang
    if username:
        at.session_state["username"] = username
        at.session_state["signed_in_at"] = datetime.now(UTC)
    return at


def test_the_dashboard_speaks_german_by_default_and_english_at_a_click(dash):
    at = app("cm.mueller")
    at.run()
    assert not at.exception
    assert at.title[0].value == "Meine Fälle"
    assert at.metric[0].label == "Offene Fälle"
    assert [m.label for m in at.metric] == [
        "Offene Fälle",
        "Überfällig",
        "Bald fällig",
        "Handlungsbedarf",
    ]
    at.radio(key="lang").set_value("en").run()
    assert not at.exception
    assert at.title[0].value == "My cases"
    assert at.metric[0].label == "Open cases"


def test_the_sign_in_page_is_german_by_default(dash):
    at = app()
    at.run()
    assert not at.exception
    assert at.text_input(key="signin_user").label == "Benutzername"
    assert at.text_input(key="signin_password").label == "Passwort"


@pytest.mark.parametrize(
    ("username", "first_title"),
    [("stadt.weber", "Unsere Warteschlange"), ("lead.schmidt", "Ergebnisse"), ("admin", "Fälle")],
)
def test_each_role_lands_on_a_german_page_without_errors(dash, username, first_title):
    at = app(username)
    at.run()
    assert not at.exception
    assert at.title[0].value == first_title


def test_a_case_reads_in_german_including_its_data_words(dash, actors):
    ref = start_case(dash, actors["cm.mueller"], now=NOW, nationality="PL")
    at = app("cm.mueller", page="person")
    at.session_state["case"] = ref
    at.run()
    assert not at.exception
    fields = list(at.table[0].value["Feld"])
    assert "Vorname" in fields
    assert "given_name" not in fields
    steps = at.dataframe[0].value
    assert "Wohnung und Wohnungsgeberbestätigung" in list(steps["Schritt"])
    (history,) = [d.value for d in at.dataframe if "Warum" in d.value.columns]
    timeline = list(history["Was"])
    assert "Fall eröffnet" in timeline
    assert not [w for w in timeline if "." in w], timeline  # no raw "case.opened" keys

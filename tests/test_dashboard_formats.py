"""No raw values on the screens: the case page, its timeline, a partner's queue, My cases and
Outcomes under AppTest, in German and in English. No True/False, no ISO dates, no enum keys,
no country or language codes, no `system:` actors, and staff by display name."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
import streamlit as st
from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from tests.conftest import NOW
from tests.helpers import start_case
from tests.test_fit import enrolled
from tests.test_i18n import APP, DASHBOARD
from tracker import fit
from tracker.access import system_actor
from tracker.config import get_settings
from tracker.db import get_database
from tracker.enums import (
    ConsentMethod,
    ContactKind,
    FitChannel,
    FitStatus,
    OfferKind,
    Profile,
    Purpose,
)
from tracker.journeys.advance import advance_case
from tracker.journeys.steps import complete_step
from tracker.models import Case, FitParticipant
from tracker.pathway import get_registry

# Keys a screen must translate; those with an underscore never read as a word in any language.
_catalogue = get_registry().catalogue
RAW_WORDS = {
    *(v.value for v in (*Purpose, *Profile, *ConsentMethod, *OfferKind, *FitChannel)),
    *_catalogue,
    *(o for entry in _catalogue.values() for o in entry.outcomes),
}
RAW_KEYS = {w for w in RAW_WORDS if "_" in w}
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")
ACTION_KEY = re.compile(r"^[a-z]+\.[a-z_]+$")  # an audit action as stored: case.opened, fit.job
BOOLEAN = re.compile(r"\b(True|False)\b")


@pytest.fixture(params=["de", "en"])
def lang(request, db, monkeypatch):
    """The dashboard on the test database in one language (also for the labels AppTest itself
    asks widgets for outside a script run)."""
    monkeypatch.setenv("ONBOARDING_DATABASE_URL", db.url)
    monkeypatch.setenv("ONBOARDING_ORCHESTRATION", "inline")
    monkeypatch.setattr("dashboard.common.DEFAULT", request.param)
    get_settings.cache_clear()
    get_database.cache_clear()
    st.cache_data.clear()  # staff names and figures are cached per database URL
    yield request.param
    st.cache_data.clear()
    get_database.cache_clear()
    get_settings.cache_clear()


def run(username: str, language: str, page: str | None = None, **state: object) -> AppTest:
    at = AppTest.from_file(
        str(DASHBOARD / "views" / f"{page}.py") if page else APP, default_timeout=60
    )
    at.session_state["lang"] = language
    at.session_state["username"] = username
    at.session_state["signed_in_at"] = datetime.now(UTC)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def _unescaped(text: object) -> str:
    # plain() escapes Markdown (17\.05.1994) and breaks links with word joiners.
    return re.sub(r"\\(.)", r"\1", str(text)).replace("\u2060", "")


def shown(at: AppTest) -> list[str]:
    """Every piece of text the page shows: headings, captions, alerts, metrics, each cell and
    header of its tables, and the labels and options of its select boxes and radios."""
    parts: list[object] = []
    for kind in ("title", "header", "subheader", "caption", "markdown"):
        parts += [e.value for e in getattr(at, kind)]
    for kind in ("error", "warning", "info", "success"):
        parts += [e.value for e in getattr(at, kind)]
    for m in at.metric:
        parts += [m.label, m.value]
    for frame in [*at.table, *at.dataframe]:
        parts += list(frame.value.columns)
        parts += list(frame.value.to_numpy().ravel())
    for widget in [*at.selectbox, *at.radio]:
        parts += [widget.label, *widget.options]
    for widget in at.sidebar.caption:
        parts.append(widget.value)
    return [_unescaped(p) for p in parts if p is not None and str(p) != ""]


def assert_no_raw_values(texts: list[str], language: str) -> None:
    joined = "\n".join(texts)
    assert not BOOLEAN.findall(joined), [t for t in texts if BOOLEAN.search(t)]
    assert not ISO_DATE.findall(joined), [t for t in texts if ISO_DATE.search(t)]
    assert "system:" not in joined
    assert not [t for t in texts if ACTION_KEY.match(t)], [t for t in texts if ACTION_KEY.match(t)]
    keys = [t for t in texts for k in RAW_KEYS if re.search(rf"\b{re.escape(k)}\b", t)]
    assert not keys, keys
    # Codes and lower-case keys as a whole cell: IR, fa, work ...
    codes = {"IR", "IN", "PL", "fa", "en", "de"}
    whole = RAW_WORDS | codes if language == "de" else RAW_KEYS | codes
    assert not [t for t in texts if t in whole], [t for t in texts if t in whole]


def frame(at: AppTest, column: str):
    (found,) = [d.value for d in [*at.dataframe, *at.table] if column in d.value.columns]
    return found


WORDS = {
    "de": {
        "no": "Nein",
        "iran": "Iran",
        "persian": "Persisch",
        "work": "Arbeit",
        "system": "System (nächste Schritte)",
        "when": "Wann",
        "why": "Warum",
        "what": "Was",
        "who": "Wer",
        "field": "Feld",
        "value": "Wert",
        "manager": "Case-Manager:in",
        "offer": "Bewerbungstraining",
        "kind": "Art des Angebots",
        "accelerated": "Beschleunigtes Fachkräfteverfahren",
        "nationality": "Staatsangehörigkeit",
        "consent_how": "Unterschriebenes Formular",
        "step": "Integrations- / Sprachkurs",
        "date": "02.03.2026",
    },
    "en": {
        "no": "No",
        "iran": "Iran",
        "persian": "Persian",
        "work": "Work",
        "system": "System (next steps)",
        "when": "When",
        "why": "Why",
        "what": "What",
        "who": "Who",
        "field": "Field",
        "value": "Value",
        "manager": "Case manager",
        "offer": "Application training",
        "kind": "Kind of offer",
        "accelerated": "Accelerated procedure",
        "nationality": "Nationality",
        "consent_how": "Signed form",
        "step": "Integration / language course",
        "date": "2 Mar 2026",
    },
}
KIM = "Kommunales Integrationsmanagement Bochum (KIM)"


def test_the_case_page_and_its_timeline_show_no_raw_values(lang, db, actors):
    words = WORDS[lang]
    manager = actors["cm.mueller"]
    ref = start_case(db, manager, now=NOW, nationality="IR", preferred_language="fa")
    # The case manager records both first steps; the advance (as the scheduled job) opens the
    # visa step, so the timeline holds a system actor too.
    later = NOW + timedelta(days=3)
    with db.transaction() as s:
        complete_step(s, actor=manager, reference=ref, step_key="recognition", now=later)
        complete_step(s, actor=manager, reference=ref, step_key="job_offer", now=later)
    with db.transaction() as s:
        opened = advance_case(s, actor=system_actor("advance"), reference=ref, now=later)
    assert opened.opened == ["visa"]

    at = run("cm.mueller", lang, page="person", case=ref)
    texts = shown(at)
    assert_no_raw_values(texts, lang)

    table = frame(at, words["field"])
    facts = {
        _unescaped(k): _unescaped(v)
        for k, v in zip(table[words["field"]], table[words["value"]], strict=True)
    }
    assert facts[words["nationality"]] == "Iran"
    assert facts[words["accelerated"]] == words["no"]
    assert words["persian"] in facts.values()
    assert words["work"] in facts.values()
    assert words["date"] in facts.values()  # first contact, the day the case was opened

    history = frame(at, words["why"])
    who = set(history[words["who"]])
    assert f"Sabine Müller · {KIM}" in who
    assert words["system"] in who
    assert "cm.mueller" not in "\n".join(texts)
    # 09:00 UTC on 2 March is 10:00 in Bochum.
    assert any(t.endswith("10:00") for t in history[words["when"]])
    assert any(words["consent_how"] == t for t in texts)
    assert any(words["step"] in t for t in texts)
    assert f"Sabine Müller · {KIM}" in " ".join(c.value for c in at.caption)


def test_a_fit_student_s_timeline_names_the_programme_s_events(lang, db, actors):
    (participant,) = enrolled(db, actors, 1)
    thga = actors["thga.nowak"]
    with db.transaction() as s:
        fit.add_contact(
            s,
            actor=thga,
            participant_id=participant,
            company="Ruhrbau GmbH",
            kind=ContactKind.company_visit,
            contact_on=NOW.date(),
            now=NOW,
        )
        fit.change_status(
            s, actor=thga, participant_id=participant, status=FitStatus.graduated, now=NOW
        )
    with db.read() as s:
        ref = s.scalar(
            select(Case.reference)
            .join(FitParticipant, FitParticipant.case_id == Case.id)
            .where(FitParticipant.id == participant)
        )
    at = run("cm.mueller", lang, page="person", case=ref)
    texts = shown(at)
    assert_no_raw_values(texts, lang)
    history = frame(at, WORDS[lang]["why"])
    events = set(history[WORDS[lang]["what"]])
    expected = {
        "de": {"FIT@THGA: aufgenommen", "FIT@THGA: Unternehmenskontakt", "FIT@THGA: Abschluss"},
        "en": {"FIT@THGA: enrolled", "FIT@THGA: company contact", "FIT@THGA: graduated"},
    }[lang]
    assert expected <= events
    assert any(who.startswith("Ewa Nowak · ") for who in history[WORDS[lang]["who"]])


def test_a_partner_s_queue_shows_yes_or_no_and_names_not_codes(lang, db, actors):
    words = WORDS[lang]
    start_case(db, actors["cm.mueller"], now=NOW, nationality="IR")
    at = run("afa.becker", lang, page="queue")
    assert_no_raw_values(shown(at), lang)
    if "queue_new" in [d.key for d in at.dataframe]:
        # The new offers list shows a handoff's facts once its row is clicked (selected).
        at.session_state["queue_new"] = {"selection": {"rows": [0], "columns": [], "cells": []}}
        at.run()
        assert not at.exception
    texts = shown(at)
    assert_no_raw_values(texts, lang)
    # The job offer's facts: the accelerated procedure (yes or no) and the nationality by name.
    joined = "\n".join(texts)
    assert re.search(rf"\b{words['no']}\b", joined)
    assert re.search(r"\bIran\b", joined)


def test_my_cases_names_the_case_manager(lang, db, actors):
    start_case(db, actors["cm.mueller"], now=NOW, nationality="IR")
    at = run("cm.mueller", lang)  # the app: My cases with the sidebar
    texts = shown(at)
    assert_no_raw_values(texts, lang)
    assert any(t.startswith("Sabine Müller") for t in texts)
    assert "cm.mueller" not in "\n".join(texts)
    sidebar = [c.value for c in at.sidebar.caption]
    assert f"Sabine Müller · {WORDS[lang]['manager']}" in sidebar
    assert KIM in sidebar


def test_outcomes_name_the_fit_offers_in_the_screen_s_language(lang, db, actors):
    words = WORDS[lang]
    for i in range(6):
        start_case(db, actors["cm.mueller"], now=NOW, given_name=f"P{i}", nationality="IR")
    at = run("lead.schmidt", lang, page="outcomes")
    texts = shown(at)
    assert_no_raw_values(texts, lang)
    kinds = list(frame(at, words["kind"])[words["kind"]])
    assert words["offer"] in kinds
    assert "application_training" not in kinds

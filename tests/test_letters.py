"""The welcome letter: every pathway in every language, inert newcomer data, no web links."""

from __future__ import annotations

from datetime import date

import pytest

from tests.conftest import NOW
from tests.helpers import start_case
from tracker.errors import PermissionDenied
from tracker.journeys.advance import advance_case
from tracker.journeys.queries import case_view
from tracker.journeys.steps import complete_step
from tracker.messages.letters import welcome_letter
from tracker.pathway import get_registry

PATHWAYS = {
    "skilled_worker": {},
    "student": {"purpose": "study"},
    "eu_citizen": {"nationality": "PL"},
}


@pytest.mark.parametrize("pathway", list(PATHWAYS))
def test_letter_renders_every_step_in_every_language(db, actors, pathway):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, consent_to=[], **PATHWAYS[pathway])
    with db.read() as s:
        letters = {
            lang: welcome_letter(s, actor=cm, reference=ref, language=lang)
            for lang in ("de", "en", "ar")
        }
    catalogue = get_registry().catalogue
    with db.read() as s:
        view = case_view(s, actor=cm, reference=ref)
    assert view.pathway == pathway
    keys = [st.key for st in view.steps]
    assert len(keys) >= 6
    for lang, html in letters.items():
        assert html.startswith("<!DOCTYPE html>")
        assert f'lang="{lang}"' in html
        assert ref in html and "Priya" in html
        assert "{{" not in html and "{%" not in html
        assert "http://" not in html and "https://" not in html
        title_lang = "de" if lang == "de" else "en"
        positions = [html.index(getattr(catalogue[k].title, title_lang)) for k in keys]
        assert positions == sorted(positions), "steps appear in pathway order"
    assert 'dir="rtl"' in letters["ar"] and 'dir="rtl"' not in letters["en"]
    assert "Ihre persönliche Checkliste" in letters["de"]
    assert "Your personal checklist" in letters["en"]
    assert "قائمة خطواتك الشخصية" in letters["ar"]


def test_language_defaults_to_preferred_then_german(db, actors):
    cm = actors["cm.mueller"]
    ref_en = start_case(db, cm, now=NOW, consent_to=[])  # preferred_language "en"
    ref_uk = start_case(db, cm, now=NOW, consent_to=[], given_name="Olena", preferred_language="uk")
    with db.read() as s:
        assert 'lang="en"' in welcome_letter(s, actor=cm, reference=ref_en)
        assert 'lang="de"' in welcome_letter(s, actor=cm, reference=ref_uk)


def test_registration_deadline_shown_once_housing_is_done(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, consent_to=[], nationality="PL")
    with db.read() as s:
        before = welcome_letter(s, actor=cm, reference=ref, language="en")
    assert "§17 BMG" not in before
    assert "Wohnungsgeberbestätigung" in before  # documents to bring for housing
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", on=date(2026, 2, 20), now=NOW)
    with db.transaction() as s:
        advance_case(s, actor=cm, reference=ref, now=NOW)
    with db.read() as s:
        en = welcome_letter(s, actor=cm, reference=ref, language="en")
        de = welcome_letter(s, actor=cm, reference=ref, language="de")
        ar = welcome_letter(s, actor=cm, reference=ref, language="ar")
    assert "§17 BMG: Anmeldung within 14 days of moving in" in en
    assert "March 6, 2026" in en
    assert "6. März 2026" in de
    assert "§17 BMG" in ar
    assert ">done<" in en


def test_newcomer_data_stays_inert(db, actors):
    cm = actors["cm.mueller"]
    evil = "<script>alert(1)</script>{{ 7*7 }}"
    ref = start_case(db, cm, now=NOW, consent_to=[], given_name=evil)
    with db.read() as s:
        for lang in ("de", "en", "ar"):
            html = welcome_letter(s, actor=cm, reference=ref, language=lang)
            assert "<script" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;{{ 7*7 }}" in html
            greeting = html[html.index("<h1>") : html.index("</h1>")]
            assert "49" not in greeting and "{{ 7*7 }}" in greeting


def test_partner_agent_is_refused(db, actors):
    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW)
    with db.read() as s, pytest.raises(PermissionDenied):
        welcome_letter(s, actor=actors["stadt.weber"], reference=ref)


def test_the_arabic_letter_pdf_keeps_latin_references_in_reading_order(db, actors):
    """WeasyPrint ignores <bdi>: the Unicode isolates around data keep "§17 BMG" intact."""
    import io

    from pypdf import PdfReader

    from tracker.messages.pdf import html_to_pdf

    cm = actors["cm.mueller"]
    ref = start_case(db, cm, now=NOW, consent_to=[], nationality="PL")
    with db.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", on=date(2026, 2, 20), now=NOW)
    with db.transaction() as s:
        advance_case(s, actor=cm, reference=ref, now=NOW)
    with db.read() as s:
        html = welcome_letter(s, actor=cm, reference=ref, language="ar")
    assert "\u2068" in html and "\u2069" in html
    text = "".join(p.extract_text() for p in PdfReader(io.BytesIO(html_to_pdf(html))).pages)
    assert "BMG 17§" not in text
    assert "§17 BMG" in text

"""The data-protection parts of the dashboard under AppTest: export, access log, erasure."""

from __future__ import annotations

import json

import pandas as pd
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from tests.conftest import NOW
from tests.helpers import start_case
from tests.test_dashboard import app, dash, texts
from tracker.models import Erasure, Newcomer

__all__ = ["dash"]  # the fixture, used by name below


def frame_with(at: AppTest, *columns: str) -> pd.DataFrame:
    (frame,) = [d.value for d in at.dataframe if set(columns) <= set(d.value.columns)]
    return frame


def test_a_case_manager_finds_the_export_and_who_viewed_the_person(dash, actors):
    ref = start_case(dash, actors["cm.mueller"], now=NOW, family_name="Exportova")
    with dash.read() as s:  # a partner's look at the case shows in the log
        from tracker.journeys.queries import case_view

        case_view(s, actor=actors["ihk.hoffmann"], reference=ref)
    at = app("cm.mueller", page="person")
    at.session_state["case"] = ref
    at.run()
    assert not at.exception
    assert "Data protection" in [h.value for h in at.subheader]
    labels = [b.proto.label for b in at.get("download_button")]
    assert {"Data export as PDF", "Data export as HTML", "Data export as JSON"} <= set(labels)
    assert {"Welcome letter as PDF", "Welcome letter as HTML"} <= set(labels)
    assert len(labels) == len(set(labels))  # each button says what it downloads
    log = frame_with(at, "Organisation", "What")
    assert set(log["Who"]) >= {"Lukas Hoffmann", "Sabine Müller"}  # display names
    assert "IHK Mittleres Ruhrgebiet" in set(log["Organisation"])
    assert "case page" in set(log["What"])
    # Only admins are offered erasure.
    assert "erase_submit" not in [b.key for b in at.button]


def test_a_partner_sees_no_export_no_access_log_and_no_erasure(dash, actors):
    ref = start_case(dash, actors["cm.mueller"], now=NOW)
    at = app("ihk.hoffmann", page="person")
    at.session_state["case"] = ref
    at.run()
    assert not at.exception
    assert "Data protection" not in [h.value for h in at.subheader]
    assert not at.get("download_button")


def test_an_admin_erases_a_person_only_after_typing_the_reference_again(dash, actors):
    ref = start_case(dash, actors["cm.mueller"], now=NOW, family_name="Loeschmich")
    at = app("admin", page="person")
    at.session_state["case"] = ref
    at.run()
    at.text_input(key="erase_confirm").input("WO-AAAA-BBBB")
    at.button(key="erase_submit").click().run()
    assert "type the case reference again" in texts(at)
    with dash.read() as s:
        assert s.scalar(select(func.count()).select_from(Newcomer)) == 1
    at.text_input(key="erase_confirm").input(ref)
    at.button(key="erase_submit").click().run()
    assert not at.exception
    assert f"{ref} was erased" in texts(at)
    with dash.read() as s:
        assert s.scalar(select(func.count()).select_from(Newcomer)) == 0
        assert s.scalar(select(func.count()).select_from(Erasure)) == 1
    # The admin page lists the tombstone and finds it by the reference.
    admin = app("admin", page="admin")
    admin.run()
    admin.text_input(key="erasure_lookup").input(ref).run()
    assert not admin.exception
    assert "Yes, erased: on request (Art. 17)" in texts(admin)
    tombs = frame_with(admin, "Rows removed")
    assert list(tombs["Who"]) == ["Admin (Demo)"] and "Loeschmich" not in json.dumps(
        tombs.to_dict(), default=str
    )

"""The daily lists under AppTest: a row click opens its item, lists page and count, queues keep
new offers apart and accept several at once, forms reset after an action, the case manager's
inbox, and progress per partner.

AppTest draws a table but cannot click it; a click is what the browser sends as the table's
selection state, so the tests set ``at.session_state[<table key>]`` as Streamlit's programmatic
selection does (tests/e2e/test_dashboard_browser.py clicks the rows in Chromium)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from streamlit.testing.v1 import AppTest

from tests.conftest import NOW
from tests.helpers import advance, start_case
from tests.test_dashboard import app, dash, texts
from tracker.journeys.handoffs import accept_handoff, decline_handoff
from tracker.journeys.steps import complete_step
from tracker.models import Handoff, Step

__all__ = ["dash"]  # the fixture, used by name below


def click_rows(at: AppTest, table: str, *rows: int) -> AppTest:
    """What the browser sends when rows of a table are clicked (ticked)."""
    at.session_state[table] = {"selection": {"rows": list(rows), "columns": [], "cells": []}}
    return at.run()


def column(at: AppTest, table: str, name: str) -> list[Any]:
    return list(at.dataframe(key=table).value[name])


def keys(elements: Any) -> list[str | None]:
    return [e.key for e in elements]


def labels(elements: Any) -> list[str]:
    return [e.label for e in elements]


def captions(at: AppTest) -> list[str]:
    return [str(c.value) for c in at.caption]


def eu_case(db: Any, cm: Any, given_name: str, **kw: Any) -> str:
    return start_case(db, cm, now=NOW, given_name=given_name, nationality="PL", **kw)


def handoff_state(db: Any, reference: str, step: str) -> str:
    with db.read() as s:
        states = s.scalars(
            select(Handoff.state)
            .join(Step, Handoff.step_id == Step.id)
            .where(Step.key == step, Step.case.has(reference=reference))
            .order_by(Handoff.id)
        ).all()
    return str(states[-1])


# --- My cases ------------------------------------------------------------------------------


def test_a_click_on_a_case_opens_it(dash, actors):
    cm = actors["cm.mueller"]
    refs = [eu_case(dash, cm, f"Person{i}") for i in range(3)]
    at = app("cm.mueller")  # the whole app: a row click switches pages through its navigation
    at.run()
    assert not at.exception
    names = column(at, "cases_table", "Name")
    assert names[0].startswith("Person")  # the name first, given name before family name
    assert list(at.dataframe(key="cases_table").value.columns[:4]) == [
        "Name",
        "Stage",
        "Next due",
        "Progress",
    ]
    assert "cases_open_ref" not in keys(at.selectbox)  # no dropdown and button any more
    second = column(at, "cases_table", "Reference")[1]
    assert second in refs

    click_rows(at, "cases_table", 1)
    assert not at.exception
    assert at.title[0].value.startswith(second)  # the case page, with that case
    assert at.session_state["case"] == second


def test_my_cases_pages_through_every_case_and_says_how_many(dash, actors, monkeypatch):
    monkeypatch.setattr("dashboard.lists.PAGE_SIZE", 2)
    cm = actors["cm.mueller"]
    for i in range(5):
        eu_case(dash, cm, f"Person{i}")
    at = app("cm.mueller", page="my_cases")
    at.run()
    assert "1–2 of 5" in captions(at)
    first_page = column(at, "cases_table", "Reference")
    assert len(first_page) == 2
    assert at.button(key="cases_table_previous").disabled

    at.button(key="cases_table_next").click().run()
    assert "3–4 of 5" in captions(at)
    assert not set(column(at, "cases_table", "Reference")) & set(first_page)
    at.button(key="cases_table_next").click().run()
    assert "5–5 of 5" in captions(at)
    assert at.button(key="cases_table_next").disabled

    # Another filter starts on the first page again.
    at.text_input(key="cases_search").input("Person").run()
    assert "1–2 of 5" in captions(at)
    at.text_input(key="cases_search").input("Person3").run()
    assert "1–1 of 1" in captions(at)


def test_each_case_shows_its_progress_and_stage_in_words(dash, actors):
    cm = actors["cm.mueller"]
    ref = eu_case(dash, cm, "Ola")
    with dash.transaction() as s:
        complete_step(s, actor=cm, reference=ref, step_key="housing", now=NOW)
    advance(dash, cm, ref, now=NOW)
    at = app("cm.mueller", page="my_cases")
    at.run()
    table = at.dataframe(key="cases_table").value
    row = table[table["Reference"] == ref].iloc[0]
    assert row["Progress"] == "1 / 6"
    # The advance opened registration: that is where the case stands now.
    assert row["Stage"] == "Residence registration (Anmeldung)"
    assert "Case manager" not in table.columns  # "mine": no column for whose it is
    at.selectbox(key="cases_scope").set_value("all").run()
    table = at.dataframe(key="cases_table").value
    assert "Case manager" in table.columns


def test_the_inbox_shows_what_needs_me_and_opens_the_case(dash, actors):
    cm, vbw = actors["cm.mueller"], actors["vbw.schulz"]
    declined = eu_case(dash, cm, "Dora")
    eu_case(dash, actors["cm.yilmaz"], "Else")  # not his case: not in his inbox
    with dash.transaction() as s:
        decline_handoff(s, actor=vbw, reference=declined, step_key="housing", reason="Voll")
    at = app("cm.mueller")
    at.run()
    assert at.subheader[0].value == "Needs me"
    inbox = at.dataframe(key="cases_inbox").value
    first = inbox.iloc[0]
    assert (first["Name"], first["What"]) == (
        "Dora Raman",
        "declined by VBW Bauen und Wohnen: Voll",
    )
    assert "Else Raman" not in set(inbox["Name"])
    click_rows(at, "cases_inbox", 0)
    assert at.title[0].value.startswith(declined)


# --- The partner queue ----------------------------------------------------------------------


def test_new_offers_stand_apart_and_several_are_accepted_at_once(dash, actors):
    cm = actors["cm.mueller"]
    refs = [eu_case(dash, cm, f"Person{i}") for i in range(3)]
    at = app("vbw.schulz", page="queue")
    at.run()
    assert not at.exception
    new = column(at, "queue_new", "Reference")
    assert sorted(new) == sorted(refs)
    assert "Email" not in at.dataframe(key="queue_new").value.columns
    assert "queue_work" not in keys(at.dataframe)  # nothing in progress yet

    click_rows(at, "queue_new", 0, 2)
    at.button(key="queue_accept").click().run()
    assert not at.exception
    assert "2 of 2 offers accepted." in texts(at)
    assert column(at, "queue_new", "Reference") == [new[1]]
    assert sorted(column(at, "queue_work", "Reference")) == sorted([new[0], new[2]])
    assert [handoff_state(dash, r, "housing") for r in new] == ["accepted", "offered", "accepted"]
    # Nothing stays selected: no button acts on the next offers by itself.
    assert "queue_accept" not in keys(at.button)


def test_accepting_several_says_which_one_failed_and_why_and_accepts_the_others(
    dash, actors, monkeypatch
):
    # AppTest labels choices outside the run in the fallback language: make it German here.
    monkeypatch.setattr("dashboard.common.DEFAULT", "de")
    cm, vbw = actors["cm.mueller"], actors["vbw.schulz"]
    refs = [eu_case(dash, cm, f"Person{i}") for i in range(2)]
    at = app("vbw.schulz", page="queue", lang="de")
    at.run()
    new = column(at, "queue_new", "Fallnummer")
    click_rows(at, "queue_new", 0, 1)
    with dash.transaction() as s:  # a colleague takes the first meanwhile
        accept_handoff(s, actor=vbw, reference=new[0], step_key="housing")
    at.button(key="queue_accept").click().run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith(f"Nicht angenommen: {new[0]} · Wohnung")
    assert "1 von 2 Angeboten angenommen." in texts(at)
    assert {handoff_state(dash, r, "housing") for r in refs} == {"accepted"}


def test_the_outcome_chosen_for_one_person_is_never_used_for_the_next(dash, actors):
    cm, ihk = actors["cm.mueller"], actors["ihk.hoffmann"]
    refs = [start_case(dash, cm, now=NOW, given_name=f"Person{i}") for i in range(2)]
    for ref in refs:
        with dash.transaction() as s:
            accept_handoff(s, actor=ihk, reference=ref, step_key="recognition")
    at = app("ihk.hoffmann", page="queue")
    at.run()
    work = column(at, "queue_work", "Reference")
    click_rows(at, "queue_work", 0)
    outcome = next(s for s in at.selectbox if s.label == "Outcome")
    outcome.set_value("partial").run()
    at.button(key="queue_complete").click().run()
    assert not at.exception
    with dash.read() as s:
        done = s.scalar(
            select(Step.outcome).where(Step.key == "recognition", Step.case.has(reference=work[0]))
        )
    assert done == "partial"
    # Afterwards nothing is selected and no form is shown.
    assert column(at, "queue_work", "Reference") == [work[1]]
    assert "queue_complete" not in keys(at.button)

    # Even if the list's selection lands on the next person (as it did when the list moved up
    # under a kept selection), that person's form starts empty: one more click cannot complete
    # it with the outcome chosen for the first.
    click_rows(at, "queue_work", 0)
    outcome = next(s for s in at.selectbox if s.label == "Outcome")
    assert outcome.value is None
    at.button(key="queue_complete").click().run()
    assert "Choose the outcome first." in texts(at)
    assert handoff_state(dash, work[1], "recognition") == "accepted"


def test_the_queue_is_searched_by_name_or_reference(dash, actors):
    cm = actors["cm.mueller"]
    ola = eu_case(dash, cm, "Ola", family_name="Kowalski")
    eu_case(dash, cm, "Anna", family_name="Nowak")
    at = app("vbw.schulz", page="queue")
    at.run()
    at.text_input(key="queue_search").input("kowalski").run()
    assert column(at, "queue_new", "Reference") == [ola]
    assert column(at, "queue_new", "Name") == ["Ola Kowalski"]
    at.text_input(key="queue_search").input("Nobody").run()
    assert "queue_new" not in keys(at.dataframe)
    assert "None match." in captions(at)


def test_a_partner_opens_a_case_from_its_queue_and_acts_on_it_there(dash, actors):
    cm, vbw = actors["cm.mueller"], actors["vbw.schulz"]
    ref = eu_case(dash, cm, "Ola")
    with dash.transaction() as s:
        accept_handoff(s, actor=vbw, reference=ref, step_key="housing")
    at = app("vbw.schulz")  # the whole app, whose first page for a partner is the queue
    at.run()
    click_rows(at, "queue_work", 0)
    at.button(key="queue_open_work").click().run()
    assert not at.exception
    assert at.title[0].value.startswith(ref)
    assert "Click a step in the table to act on it." in captions(at)

    click_rows(at, "person_steps", 0)  # the partner sees its own step only: housing
    (action,) = at.main.radio
    assert action.options == ["complete", "return to the case manager (with reason)"]
    at.button(key="person_submit").click().run()
    assert not at.exception
    assert handoff_state(dash, ref, "housing") == "completed"


# --- The case page --------------------------------------------------------------------------


def test_the_case_page_offers_only_what_the_steps_state_allows(dash, actors):
    cm = actors["cm.mueller"]
    ref = eu_case(dash, cm, "Ola")
    at = app("cm.mueller", page="person")
    at.session_state["case"] = ref
    at.run()
    assert not at.radio  # nothing chosen, no form
    click_rows(at, "person_steps", 0)  # housing: open, offered to VBW
    (action,) = at.radio
    assert action.options == [
        "record as done",
        "start",
        "block (with reason)",
        "skip (with reason)",
        "hand off to a partner",
        "withdraw the handoff",
    ]
    assert "Reason" not in labels(at.text_input)  # only where a reason is needed
    action.set_value("offer").run()
    partner = next(s for s in at.selectbox if s.label == "Partner")
    assert partner.value == "vbw"  # the step's owner
    (action,) = at.radio
    action.set_value("block").run()
    assert "Reason" in labels(at.text_input)

    click_rows(at, "person_steps", 1)  # registration: pending
    (action,) = at.radio
    assert action.options == ["skip (with reason)"]


def test_a_step_whose_owner_has_no_queue_does_not_default_to_another_partner(dash, actors):
    cm = actors["cm.mueller"]
    ref = eu_case(dash, cm, "Ola")
    for step in ("housing", "registration"):
        with dash.transaction() as s:
            complete_step(s, actor=cm, reference=ref, step_key=step, now=NOW)
        advance(dash, cm, ref, now=NOW)
    at = app("cm.mueller", page="person")
    at.session_state["case"] = ref
    at.run()
    steps = list(at.dataframe(key="person_steps").value["Step"])
    click_rows(at, "person_steps", steps.index("Tax ID"))
    (action,) = at.radio
    action.set_value("offer").run()
    partner = next(s for s in at.selectbox if s.label == "Partner")
    assert partner.value is None  # the Federal Central Tax Office works no queue here
    at.button(key="person_submit").click().run()
    assert "Choose the partner first." in texts(at)


def test_after_an_action_the_case_page_form_starts_again_from_nothing(dash, actors):
    cm = actors["cm.mueller"]
    ref = eu_case(dash, cm, "Ola")
    at = app("cm.mueller", page="person")
    at.session_state["case"] = ref
    at.run()
    click_rows(at, "person_steps", 0)
    (action,) = at.radio
    action.set_value("block").run()
    next(t for t in at.text_input if t.label == "Reason").input("Pass fehlt").run()
    at.button(key="person_submit").click().run()
    assert not at.exception
    with dash.read() as s:
        assert s.scalar(select(Step.state).where(Step.key == "housing")) == "blocked"
    assert not at.radio  # the step is no longer chosen
    click_rows(at, "person_steps", 0)
    (action,) = at.radio
    assert action.value == "resume"  # the first action that applies now, no reason carried
    assert "Reason" not in labels(at.text_input)


# --- Progress per partner -------------------------------------------------------------------


def _vbw_offers(db: Any, actors: Any, n: int) -> None:
    for i in range(n):
        eu_case(db, actors["cm.mueller"], f"Person{i}")


def test_case_managers_see_every_partners_progress_and_open_its_queue(dash, actors):
    _vbw_offers(dash, actors, 3)
    at = app("cm.mueller")
    at.run()
    at.switch_page("views/partners.py").run()
    assert not at.exception
    table = at.dataframe(key="partners_table").value
    vbw = table[table["Partner"] == "VBW Bauen und Wohnen"].iloc[0]
    assert (vbw["New"], vbw["Open"], vbw["In progress"]) == ("3", "3", "0")
    row = list(table["Partner"]).index("VBW Bauen und Wohnen")
    click_rows(at, "partners_table", row)
    assert not at.exception
    assert at.title[0].value == "Partner queue"
    assert at.selectbox(key="queue_org").value == "vbw"
    assert len(column(at, "queue_new", "Reference")) == 3


def test_leadership_sees_small_cells_as_a_dash_with_a_note(dash, actors, monkeypatch):
    monkeypatch.setattr("dashboard.common.DEFAULT", "de")
    _vbw_offers(dash, actors, 3)
    at = app("lead.schmidt", page="partners", lang="de")
    at.run()
    assert not at.exception
    (table,) = [d.value for d in at.dataframe]  # not selectable: leadership opens no queue
    vbw = table[table["Partnerorganisation"] == "VBW Bauen und Wohnen"].iloc[0]
    assert vbw["Offen"] == "–"  # 3 open handoffs: hidden, not dropped
    assert any(c.startswith("–: weniger als 5 Übergaben") for c in captions(at))
    assert not any("Warteschlange" in c for c in captions(at))  # leadership opens no queue

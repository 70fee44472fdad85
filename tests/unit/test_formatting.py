"""The dashboard's formats: dates, times, numbers and codes in the screen's language (Babel),
moments on the office's clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest

from dashboard import formatting


@pytest.fixture(params=["de", "en"])
def language(request, monkeypatch):
    monkeypatch.setattr(formatting, "lang", lambda: request.param)
    monkeypatch.setattr("dashboard.common.lang", lambda: request.param)
    return request.param


def expect(language: str, de: str, en: str) -> str:
    return de if language == "de" else en


def test_a_day_is_written_the_language_s_way(language):
    assert formatting.date_text(date(2026, 12, 7)) == expect(language, "07.12.2026", "7 Dec 2026")
    assert formatting.date_text("2026-12-07") == formatting.date_text(date(2026, 12, 7))
    assert formatting.date_text(None) == ""


def test_a_stored_moment_is_shown_on_the_office_s_clock(language):
    # A save at 03:59 in Bochum is 02:59 UTC in winter; the screen says 03:59.
    saved = datetime(2026, 12, 7, 2, 59, tzinfo=UTC)
    assert formatting.time_text(saved) == "03:59"
    assert formatting.datetime_text(saved) == expect(
        language, "07.12.2026, 03:59", "7 Dec 2026, 03:59"
    )
    # Summer time: two hours ahead of UTC.
    assert formatting.time_text(datetime(2026, 7, 1, 22, 30, tzinfo=UTC)) == "00:30"
    assert formatting.date_text(datetime(2026, 7, 1, 22, 30, tzinfo=UTC)) == expect(
        language, "02.07.2026", "2 Jul 2026"
    )


def test_a_moment_without_a_zone_is_local_time(language):
    assert formatting.time_text(datetime(2026, 12, 7, 4, 0)) == "04:00"
    assert formatting.time_text(time(9, 30)) == "09:30"
    # Prefect answers in ISO text with an offset; the screen shows the office's time.
    assert formatting.datetime_text("2026-12-07T03:00:05.123456+00:00") == expect(
        language, "07.12.2026, 04:00", "7 Dec 2026, 04:00"
    )


def test_numbers_use_the_language_s_separators(language):
    assert formatting.number_text(62.0) == expect(language, "62,0", "62.0")
    assert formatting.number_text(12.5) == expect(language, "12,5", "12.5")
    assert formatting.number_text(1234) == expect(language, "1.234", "1,234")
    assert formatting.number_text(0.5, decimals=0) in ("0", "1")
    assert formatting.number_text(None) == "–"


def test_codes_become_names(language):
    assert formatting.country_name("IR") == "Iran"
    assert formatting.country_name("DE") == expect(language, "Deutschland", "Germany")
    assert formatting.language_name("fa") == expect(language, "Persisch", "Persian")
    assert formatting.language_name("de") == expect(language, "Deutsch", "German")
    assert formatting.month_text("2026-11") == "November 2026"
    assert formatting.month_text("2026") == "2026"


def test_a_newcomer_s_facts_show_no_raw_values(language):
    assert formatting.fact_text("eu_citizen", False) == expect(language, "Nein", "No")
    assert formatting.fact_text("accelerated_procedure", True) == expect(language, "Ja", "Yes")
    assert formatting.fact_text("purpose", "work") == expect(language, "Arbeit", "Work")
    assert formatting.fact_text("nationality", "IR") == "Iran"
    assert formatting.fact_text("preferred_language", "fa") == expect(
        language, "Persisch", "Persian"
    )
    assert formatting.fact_text("birth_date", date(1994, 5, 17)) == expect(
        language, "17.05.1994", "17 May 1994"
    )
    assert formatting.fact_text("given_name", "Priya") == "Priya"
    assert formatting.fact_text("phone", None) == ""


def test_scheduled_work_and_prefect_states_are_labels(language):
    assert formatting.system_text("advance") == expect(
        language, "System (nächste Schritte)", "System (next steps)"
    )
    assert formatting.system_text("some-new-flow") == "System"
    assert formatting.run_state_text("Completed") == expect(language, "Abgeschlossen", "Completed")
    assert formatting.run_state_text("COMPLETED") == formatting.run_state_text("Completed")

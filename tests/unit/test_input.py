"""Bad input to the newcomer forms (CLI, dashboard, import all validate through NewcomerIn)
and cells a spreadsheet would run."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.helpers import newcomer
from tracker.reporting.reports import spreadsheet_safe
from tracker.schemas import NewcomerUpdate


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("email", "a\x00@b.de", "control characters"),
        ("phone", "+49\x00234", "control characters"),
        ("phone", "+49 234\x071", "control characters"),
        ("nationality", "ß", "two-letter"),  # upper-cased it would be "SS"
        ("nationality", "ﬁ", "two-letter"),  # upper-cased it would be "FI", Finland
        ("nationality", "DEU", "two-letter"),
    ],
)
def test_values_a_database_or_a_person_would_trip_over_are_refused(field, value, says):
    with pytest.raises(ValidationError, match=says) as refused:
        newcomer(**{field: value})
    assert refused.value.errors()[0]["loc"] == (field,)


def test_lower_case_country_codes_and_scripts_are_fine():
    person = newcomer(nationality="ua", family_name="Коваленко", given_name="Олена")
    assert person.nationality == "UA" and person.eu_citizen is False


def test_a_phone_number_with_a_note_on_its_own_line_is_kept_as_written():
    assert newcomer(phone="+49 234 5550199\n(abends)").phone == "+49 234 5550199\n(abends)"


def test_an_update_checks_contact_data_the_same_way():
    with pytest.raises(ValidationError, match="control characters"):
        NewcomerUpdate(phone="12\x003")
    with pytest.raises(ValidationError, match="e-mail"):
        NewcomerUpdate(email="not-an-address")
    assert NewcomerUpdate(email="").email is None


@pytest.mark.parametrize("text", ['=HYPERLINK("x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_a_cell_a_spreadsheet_would_run_stays_text(text):
    assert spreadsheet_safe(text) == "'" + text
    assert spreadsheet_safe("IHK Mittleres Ruhrgebiet") == "IHK Mittleres Ruhrgebiet"
    assert spreadsheet_safe(-5) == -5

"""Any CI setting but an explicit "no" makes a missing PostgreSQL or browser fail the run."""

import pytest

from tests.ci import in_ci


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", "on", "github", " true "])
def test_any_set_ci_value_but_an_explicit_no_means_ci(value):
    assert in_ci({"CI": value})


@pytest.mark.parametrize("value", ["", "0", "false", "False", "no", "off", " "])
def test_an_unset_or_explicitly_false_ci_is_not_ci(value):
    assert not in_ci({"CI": value})


def test_no_ci_variable_is_not_ci():
    assert not in_ci({})

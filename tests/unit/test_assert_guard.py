"""The guard of tests/assert_guard.py, run on small test files in a pytest of their own."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

INI = """
[pytest]
addopts = -p tests.assert_guard
enable_assertion_pass_hook = true
empty_parameter_set_mark = fail_at_collect
"""

TESTS = """
import pytest


def test_a_loop_over_nothing():
    for value in []:
        assert value > 0


def test_an_if_that_never_lets_the_assertion_run():
    found = None
    if found is not None:
        assert found == 1


def test_a_loop_over_something():
    for value in [1, 2]:
        assert value > 0


def test_one_assert_ran_of_two():
    found = None
    if found is not None:
        assert found == 1
    assert True


def test_a_loop_over_nothing_beside_an_assert_that_ran():
    for value in []:
        assert value > 0
    assert True


def test_a_loop_that_skips_its_assert_every_time():
    for value in [1, 2]:
        if value > 5:
            assert value
    assert True


def test_no_asserts_at_all_is_not_judged():
    pass


def test_an_assert_in_a_raises_block_counts_when_it_runs():
    found = None
    if found is not None:
        assert found
    with pytest.raises(ZeroDivisionError):
        assert 1 / 1 == 1
        raise ZeroDivisionError


def test_a_raise_before_the_only_assert_that_could_run():
    for value in []:
        assert value
    with pytest.raises(ZeroDivisionError):
        assert 1 / 0


def test_only_asserts_a_raise_prevents_from_running_are_not_judged():
    with pytest.raises(ZeroDivisionError):
        assert 1 / 0


def test_an_assert_in_a_callback_never_called_is_not_judged():
    def check(value):
        assert value

    assert callable(check)


def test_an_assert_in_a_nested_function_counts_when_it_runs_in_a_thread():
    import threading

    def check():
        assert True

    found = None
    if found is not None:
        assert found
    thread = threading.Thread(target=check)
    thread.start()
    thread.join()


@pytest.mark.parametrize("values", [[], [1]])
def test_parametrised_over_an_empty_case(values):
    for value in values:
        assert value


class TestInAClass:
    def test_a_method_whose_loop_asserts_nothing(self):
        for value in ():
            assert value
"""


@pytest.fixture
def guarded(pytester: pytest.Pytester) -> pytest.Pytester:
    """A folder of its own with the guard switched on as pyproject.toml does it."""
    pytester.makeini(INI)
    pytester.makepyfile(test_sample=TESTS)
    return pytester


def test_the_guard_fails_exactly_the_tests_whose_own_asserts_never_ran(guarded):
    reports = guarded.inline_run("-p", "no:cacheprovider").getreports("pytest_runtest_logreport")
    calls = {r.nodeid.split("::", 1)[1]: r for r in reports if r.when == "call"}
    assert {name: report.outcome for name, report in calls.items()} == {
        "test_a_loop_over_nothing": "failed",
        "test_an_if_that_never_lets_the_assertion_run": "failed",
        "test_a_loop_over_something": "passed",
        "test_one_assert_ran_of_two": "passed",
        "test_a_loop_over_nothing_beside_an_assert_that_ran": "failed",
        "test_a_loop_that_skips_its_assert_every_time": "failed",
        "test_no_asserts_at_all_is_not_judged": "passed",
        "test_an_assert_in_a_raises_block_counts_when_it_runs": "passed",
        "test_a_raise_before_the_only_assert_that_could_run": "failed",
        "test_only_asserts_a_raise_prevents_from_running_are_not_judged": "passed",
        "test_an_assert_in_a_callback_never_called_is_not_judged": "passed",
        "test_an_assert_in_a_nested_function_counts_when_it_runs_in_a_thread": "passed",
        "test_parametrised_over_an_empty_case[values0]": "failed",
        "test_parametrised_over_an_empty_case[values1]": "passed",
        "TestInAClass::test_a_method_whose_loop_asserts_nothing": "failed",
    }
    # The failure names the test, the assert statements that never ran, and why it matters.
    assert str(calls["test_a_loop_over_nothing_beside_an_assert_that_ran"].longrepr).startswith(
        "test_sample.py::test_a_loop_over_nothing_beside_an_assert_that_ran: the loop at line 28 "
        "checked nothing"
    )
    assert str(calls["test_a_loop_over_nothing"].longrepr) == (
        "test_sample.py::test_a_loop_over_nothing: none of its assert statements ran (lines 6);"
        " a loop over nothing or a condition that skipped them checks nothing"
    )


def test_a_parametrisation_over_nothing_fails_at_collection(guarded):
    guarded.makepyfile(
        test_empty="""
        import pytest

        @pytest.mark.parametrize("value", [])
        def test_nothing(value):
            assert value
        """
    )
    result = guarded.runpytest("-p", "no:cacheprovider", "test_empty.py")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*Empty parameter set in 'test_nothing'*"])

"""A test whose own assert statements never ran fails: a loop over nothing, or a condition that
kept its assertion from running, checks nothing while it looks as if it did.

Loaded for every run by ``-p tests.assert_guard`` (pyproject's pytest options), the unit tier's
too. With ``enable_assertion_pass_hook`` on, pytest's rewritten asserts ask, each time one
passes, whether anyone listens (``_check_if_assertion_pass_impl``); this plugin answers that
question itself, noting the file and line of the assert that asked, and then gives pytest's own
answer. So nobody listens to pytest's assertion-pass hook and a passing assert is not explained:
that explanation (a repr and a comparison diff of every operand), which the public hook needs,
doubled the time of assertion-heavy tests. Should pytest drop that function, every run stops
with a message saying so.

When a test passes, the asserts that ran are compared with the assert statements in the test
function's own source: it fails if none ran, or if a loop of its own ran none of the asserts
inside it (it went round zero times, or skipped them every time). Asserts in a
``pytest.raises`` (or ``warns``) block count when they run but do not make a test judged (the
raise may rightly come first), nor do those in functions defined inside the test (callbacks may
rightly never be called).
"""

from __future__ import annotations

import ast
import inspect
import sys
import textwrap
from collections.abc import Callable, Generator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from _pytest.assertion import rewrite

PASS_CHECK = "_check_if_assertion_pass_impl"  # what a rewritten assert calls when it passes
EXPECTING = {"raises", "warns", "deprecated_call"}
NESTED = ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef

Where = tuple[str, int]  # file and line of an assert that passed


class _Passes:
    """Where asserts passed during the running test's call; None between tests."""

    now: set[Where] | None = None
    installs = 0  # configured sessions (pytester runs one inside another)
    pytest_check: Callable[[], bool] | None = None


def _noted_check() -> bool:
    passed = _Passes.now
    if passed is not None:
        caller = sys._getframe(1)  # the frame of the assert that passed, at its line
        passed.add((caller.f_code.co_filename, caller.f_lineno))
    check = _Passes.pytest_check
    return check() if check is not None else False


def pytest_configure(config: pytest.Config) -> None:
    if not config.getini("enable_assertion_pass_hook"):
        raise pytest.UsageError("tests.assert_guard needs enable_assertion_pass_hook = true")
    if not callable(getattr(rewrite, PASS_CHECK, None)):
        raise pytest.UsageError(
            f"pytest has no _pytest.assertion.rewrite.{PASS_CHECK} any more: "
            "tests/assert_guard.py needs another way to count the asserts that pass"
        )
    if _Passes.installs == 0:
        _Passes.pytest_check = getattr(rewrite, PASS_CHECK)
        setattr(rewrite, PASS_CHECK, _noted_check)
    _Passes.installs += 1


def pytest_unconfigure(config: pytest.Config) -> None:
    if getattr(rewrite, PASS_CHECK, None) is not _noted_check:
        return
    _Passes.installs -= 1
    if _Passes.installs == 0:
        setattr(rewrite, PASS_CHECK, _Passes.pytest_check)


@dataclass(frozen=True)
class OwnAsserts:
    """The assert statements of one test function."""

    file: str
    lines: frozenset[int]  # all of them, nested blocks included
    judged: bool  # some stand outside pytest.raises blocks and nested functions
    # Each loop of the test (by its line) with the judged asserts anywhere inside it.
    loops: tuple[tuple[int, frozenset[int]], ...] = ()


def _expects_an_error(node: ast.With | ast.AsyncWith) -> bool:
    for item in node.items:
        call = item.context_expr
        if isinstance(call, ast.Call):
            name = call.func.attr if isinstance(call.func, ast.Attribute) else None
            name = call.func.id if isinstance(call.func, ast.Name) else name
            if name in EXPECTING:
                return True
    return False


def _asserts(node: ast.AST, offset: int, *, judged: bool) -> list[tuple[int, bool]]:
    found: list[tuple[int, bool]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Assert):
            found.append((child.lineno + offset, judged))
        nested = isinstance(child, NESTED) or (
            isinstance(child, ast.With | ast.AsyncWith) and _expects_an_error(child)
        )
        found += _asserts(child, offset, judged=judged and not nested)
    return found


def _loops(node: ast.AST, offset: int) -> list[tuple[int, frozenset[int]]]:
    """The loops of the test's own code with the judged asserts inside each (a loop inside
    a nested function or a pytest.raises block is not the test's to judge)."""
    found: list[tuple[int, frozenset[int]]] = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, NESTED) or (
            isinstance(child, ast.With | ast.AsyncWith) and _expects_an_error(child)
        ):
            continue
        if isinstance(child, ast.For | ast.AsyncFor | ast.While):
            inside = frozenset(
                line for line, judged in _asserts(child, offset, judged=True) if judged
            )
            if inside:
                found.append((child.lineno + offset, inside))
        found += _loops(child, offset)
    return found


@cache
def own_asserts(function: Callable[..., Any]) -> OwnAsserts | None:
    """The test function's own assert statements, or None when it cannot be judged: code that
    was compiled without the pass check (a bytecode cache from before the option was set, or
    rewriting switched off) never reports a pass."""
    code = getattr(function, "__code__", None)
    if code is None or PASS_CHECK not in code.co_names:
        return None
    try:
        source, first = inspect.getsourcelines(function)
        tree = ast.parse(textwrap.dedent("".join(source)))
    except (OSError, TypeError, SyntaxError):
        return None
    definition = tree.body[0]
    if not isinstance(definition, ast.FunctionDef | ast.AsyncFunctionDef):
        return None
    found = _asserts(definition, first - 1, judged=True)
    return OwnAsserts(
        file=code.co_filename,
        lines=frozenset(line for line, _ in found),
        judged=any(judged for _, judged in found),
        loops=tuple(_loops(definition, first - 1)),
    )


def _test_function(item: pytest.Item) -> Callable[..., Any] | None:
    function = getattr(item, "function", None)
    if function is None:
        return None
    # Hypothesis wraps the test; the source that holds its asserts is the inner function.
    inner = getattr(getattr(function, "hypothesis", None), "inner_test", None)
    return inspect.unwrap(inner or function)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    outer, passed = _Passes.now, set()
    _Passes.now = passed
    try:
        result = yield
    finally:
        _Passes.now = outer
    function = _test_function(item)
    asserts = own_asserts(function) if function is not None else None
    if asserts is not None and asserts.judged:
        ran = {line for file, line in passed if file == asserts.file} & asserts.lines
        if not ran:
            lines = ", ".join(str(line) for line in sorted(asserts.lines))
            pytest.fail(
                f"{item.nodeid}: none of its assert statements ran (lines {lines}); a loop "
                "over nothing or a condition that skipped them checks nothing",
                pytrace=False,
            )
        idle = [loop for loop, inside in asserts.loops if not inside & ran]
        if idle:
            where = ", ".join(str(line) for line in idle)
            pytest.fail(
                f"{item.nodeid}: the loop at line {where} checked nothing (none of the "
                "asserts inside it ran): a loop over nothing looks like a check but is none",
                pytrace=False,
            )
    return result

"""The tracker's errors are templates with named parameters, and the screens can say each one.

Babel extracts the templates from tracker/ the way babel.cfg says (every error class is a
keyword); each needs a German and an English translation in the dashboard's catalogues, with the
same placeholders. The raise sites themselves are read with ``ast``: a template is a plain string
(no f-string, nothing computed) and its placeholders are exactly the keyword arguments given.
"""

from __future__ import annotations

import ast
import string
from collections import defaultdict
from datetime import date
from functools import cache
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from tracker.errors import NotFoundError, TrackerError, ValidationFailed

ROOT = Path(__file__).resolve().parents[2]
TRACKER = ROOT / "tracker"
LOCALES = ROOT / "dashboard" / "locales"
LANGUAGES = ("de", "en")
# Which argument holds the template, for classes whose first argument is something else.
TEMPLATE_AT = {"SessionEnded": 1}
# Classes that build their message themselves from what they are given (a report, a line).
BUILDS_ITS_OWN = {"ImportFailed", "_ReadAgainFailed"}


def _mapping() -> tuple[list, dict]:
    with (ROOT / "babel.cfg").open() as fh:
        return parse_mapping_cfg(fh, str(ROOT / "babel.cfg"))


@cache
def extracted() -> dict[str, list[str]]:
    """msgid -> where tracker/ uses it, as `pybabel extract -F babel.cfg ... tracker` finds it."""
    method_map, options_map = _mapping()
    found: dict[str, list[str]] = defaultdict(list)
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(TRACKER), method_map, options_map, keywords={"_": None, "N_": None}
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


@cache
def sources() -> dict[Path, ast.Module]:
    return {path: ast.parse(path.read_text()) for path in sorted(TRACKER.rglob("*.py"))}


@cache
def error_classes() -> set[str]:
    """Every class in tracker/ that is a TrackerError, by name."""
    bases: dict[str, set[str]] = {}
    for tree in sources().values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases[node.name] = {b.id for b in node.bases if isinstance(b, ast.Name)}
    found = {"TrackerError"}
    while True:
        more = {name for name, of in bases.items() if of & found} - found
        if not more:
            return found
        found |= more


def raise_sites() -> list[tuple[str, str, ast.expr, dict[str, ast.expr]]]:
    """(where, class, template argument, keyword arguments) of every error constructed."""
    sites = []
    for path, tree in sources().items():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in error_classes() - BUILDS_ITS_OWN
            ):
                where = f"{path.relative_to(ROOT)}:{node.lineno}"
                at = TEMPLATE_AT.get(node.func.id, 0)
                assert len(node.args) == at + 1, f"{where}: give the template, then named params"
                params = {k.arg: k.value for k in node.keywords if k.arg}
                sites.append((where, node.func.id, node.args[at], params))
    return sites


def test_str_is_the_english_sentence_and_the_template_stays_with_its_parameters():
    error = NotFoundError("No case with reference '{reference}'.", reference="WO-2026-00001")
    assert str(error) == "No case with reference 'WO-2026-00001'."
    assert error.template == "No case with reference '{reference}'."
    assert error.params == {"reference": "WO-2026-00001"}
    alternatives = ValidationFailed("no {wanted_state} handoff", wanted_state=("offered", "held"))
    assert str(alternatives) == "no offered or held handoff"
    on = ValidationFailed("on {day:%d.%m.%Y}", day=date(2026, 3, 5))
    assert str(on) == "on 05.03.2026"
    # Without parameters a message is taken as it is, braces and all.
    assert str(TrackerError("a {literal} brace")) == "a {literal} brace"


def test_babel_cfg_names_every_error_class_as_a_keyword():
    _method_map, options_map = _mapping()
    keywords = set(options_map["**.py"]["keywords"])
    missing = error_classes() - BUILDS_ITS_OWN - keywords
    assert not missing, f"add to the keywords in babel.cfg: {sorted(missing)}"


def test_every_error_is_raised_with_a_plain_template_and_its_named_parameters():
    wrong = []
    for where, cls, template, params in raise_sites():
        if isinstance(template, ast.Name) and template.id.isupper():
            continue  # a module constant (SignInFailed(WRONG)), extracted where it is defined
        if not (isinstance(template, ast.Constant) and isinstance(template.value, str)):
            wrong.append(f"{where}: {cls} takes a plain string, not {ast.unparse(template)}")
            continue
        if placeholders(template.value) != set(params):
            wrong.append(
                f"{where}: {template.value!r} has {sorted(placeholders(template.value))}, "
                f"given {sorted(params)}"
            )
    assert not wrong, "\n".join(wrong)


def test_the_extraction_finds_the_templates_and_the_phrases_they_name():
    found = extracted()
    assert "No case with reference '{reference}'." in found  # records.py, queries.py
    assert "Say why the step is {state}: a reason is required." in found
    assert "Wrong username or password." in found  # marked with N_ in admin/auth.py
    assert "open cases" in found  # require_case_manager's phrase
    assert "decline" in found  # a verb marked with N_ in handoffs.py
    templates = {
        t.value
        for _w, _c, t, _p in raise_sites()
        if isinstance(t, ast.Constant) and isinstance(t.value, str)
    }
    assert templates <= set(found), sorted(templates - set(found))


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_error_template_has_a_translation(language):
    cat = catalogue(language)
    missing = {
        msgid: where
        for msgid, where in sorted(extracted().items())
        if msgid not in cat or not cat[msgid].string
    }
    assert not missing, f"{len(missing)} error messages untranslated in {language}:\n" + "\n".join(
        f"  {msgid!r}  ({', '.join(where)})" for msgid, where in missing.items()
    )


@pytest.mark.parametrize("language", LANGUAGES)
def test_error_translations_keep_their_placeholders(language):
    cat = catalogue(language)
    wrong = [
        f"  {msgid!r} -> {cat[msgid].string!r}"
        for msgid in extracted()
        if msgid in cat
        and cat[msgid].string
        and placeholders(msgid) != placeholders(str(cat[msgid].string))
    ]
    assert not wrong, f"placeholders differ in {language}:\n" + "\n".join(wrong)

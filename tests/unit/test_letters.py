"""The welcome letter's templates: every language has every document list and deadline text."""

from __future__ import annotations

from tracker.pathway import get_registry


def _word_tables(language: str) -> dict[str, dict[str, object]]:
    """The `documents` and `legal_meaning` tables a letter template sets, read from its source."""
    from jinja2 import nodes

    from tracker.messages.rendering import TEMPLATES_DIR, get_environment

    source = (TEMPLATES_DIR / "letters" / f"welcome.{language}.html").read_text("utf-8")
    tables = {}
    for assign in get_environment().parse(source).find_all(nodes.Assign):
        if assign.target.name in ("documents", "legal_meaning"):
            tables[assign.target.name] = {
                pair.key.value: pair.value.as_const() for pair in assign.node.items
            }
    return tables


def test_every_letter_language_has_every_document_list_and_deadline_text():
    from tracker.messages.letters import letter_languages

    languages = letter_languages()
    assert languages[0] == "de" and {"en", "ar"} <= set(languages)
    german = _word_tables("de")
    registry = get_registry()
    clocked = {s.id for p in registry.pathways.values() for s in p.steps if s.legal_clock}
    # Every step with a legal clock explains it; the German letter is the reference.
    assert clocked <= set(german["legal_meaning"]), clocked - set(german["legal_meaning"])
    for language in languages:
        tables = _word_tables(language)
        for name in ("documents", "legal_meaning"):
            missing = set(german[name]) - set(tables.get(name, {}))
            assert not missing, f"welcome.{language}.html lacks {name} for {sorted(missing)}"
        for key, docs in tables["documents"].items():
            assert len(docs) == len(german["documents"][key]), (language, key)
            assert all(isinstance(d, str) and d.strip() for d in docs), (language, key)

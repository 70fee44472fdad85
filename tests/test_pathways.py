"""Pathways as data on a real database: a case keeps the pathway version it started with (the
loading and refusing of pathway files is tested in tests/unit/test_pathways.py)."""

from __future__ import annotations

import yaml

from tests.conftest import NOW
from tests.helpers import newcomer
from tracker.journeys import queries
from tracker.journeys.cases import open_case, register_newcomer
from tracker.pathway import BUILTIN_DIR, load_registry


def test_a_case_keeps_the_pathway_version_it_started_with(db, actors, tmp_path):
    cm = actors["cm.mueller"]
    with db.transaction() as s:
        first = open_case(
            s,
            actor=cm,
            newcomer_id=register_newcomer(s, actor=cm, data=newcomer(nationality="PL"), now=NOW).id,
            now=NOW,
        ).reference
    v2 = yaml.safe_load((BUILTIN_DIR / "eu_citizen.v1.yaml").read_text(encoding="utf-8"))
    v2["version"] = 2
    v2["steps"].append({"id": "integration_course", "owner": "bamf", "needs": ["registration"]})
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "eu_citizen.v2.yaml").write_text(yaml.safe_dump(v2), encoding="utf-8")
    registry = load_registry(BUILTIN_DIR, extra)
    assert registry.get("eu_citizen").version == 2
    with db.transaction() as s:
        person = register_newcomer(
            s, actor=cm, data=newcomer(nationality="PL", given_name="Ola"), now=NOW
        )
        second = open_case(s, actor=cm, newcomer_id=person.id, now=NOW, registry=registry).reference
    with db.read() as s:
        old = queries.case_view(s, actor=cm, reference=first)
        new = queries.case_view(s, actor=cm, reference=second)
    assert (old.pathway_version, len(old.steps)) == (1, 6)
    assert (new.pathway_version, len(new.steps)) == (2, 7)

"""Pathways as data: the built-in files load, and malformed files are refused by name."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tracker.enums import Profile, Purpose
from tracker.errors import PathwayError
from tracker.pathway import BUILTIN_DIR, load_registry, profile_for


def test_the_built_in_pathways_cover_the_three_profiles():
    registry = load_registry()
    assert {p.profile for p in registry.latest()} == set(Profile)
    worker = registry.for_profile(Profile.skilled_worker)
    assert worker.step("registration").legal_clock.days == 14
    assert worker.step("registration").needs == ["housing"]
    assert worker.step("job_offer").legal_clock.days_accelerated == 7
    assert "residence_title" not in registry.for_profile(Profile.eu_citizen).step_ids


@pytest.mark.parametrize(
    ("eu", "purpose", "profile"),
    [
        (True, Purpose.work, Profile.eu_citizen),
        (True, Purpose.study, Profile.eu_citizen),
        (False, Purpose.study, Profile.student),
        (False, Purpose.work, Profile.skilled_worker),
    ],
)
def test_the_profile_follows_from_the_newcomers_facts(eu, purpose, profile):
    assert profile_for(eu_citizen=eu, purpose=purpose) == profile


def _folder(tmp_path: Path, name: str, body: dict) -> Path:
    for f in ("catalogue.yaml", "organisations.yaml"):
        shutil.copy(BUILTIN_DIR / f, tmp_path / f)
    (tmp_path / name).write_text(yaml.safe_dump(body, allow_unicode=True), encoding="utf-8")
    return tmp_path


def _pathway(**changes) -> dict:
    body = {
        "key": "test_path",
        "version": 1,
        "profile": "eu_citizen",
        "title": {"de": "Test", "en": "Test"},
        "steps": [
            {"id": "housing", "owner": "vbw"},
            {"id": "registration", "owner": "stadt-bochum", "needs": ["housing"]},
        ],
    }
    body.update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (_pathway(steps=[{"id": "teleport", "owner": "vbw"}]), "unknown step 'teleport'"),
        (_pathway(steps=[{"id": "housing", "owner": "nobody"}]), "unknown organisation 'nobody'"),
        (
            _pathway(
                steps=[
                    {"id": "housing", "owner": "vbw", "needs": ["registration"]},
                    {"id": "registration", "owner": "stadt-bochum", "needs": ["housing"]},
                ]
            ),
            "cycle",
        ),
        (
            _pathway(steps=[{"id": "housing", "owner": "vbw", "needs": ["visa"]}]),
            "needs unknown step 'visa'",
        ),
        ({k: v for k, v in _pathway().items() if k != "title"}, "title: Field required"),
        (_pathway(steps=[{"id": "housing"}]), "steps.0.owner: Field required"),
        (_pathway(steps=[{"id": "housing", "owner": "vbw", "colour": "red"}]), "colour"),
        (
            _pathway(steps=[{"id": "housing", "owner": "vbw"}, {"id": "housing", "owner": "vbw"}]),
            "listed twice",
        ),
        (
            _pathway(
                steps=[
                    {
                        "id": "housing",
                        "owner": "vbw",
                        "legal_clock": {"basis": "whenever", "days": 3, "reference": "x"},
                    }
                ]
            ),
            "basis must be one of",
        ),
        (_pathway(version=2), "does not match"),
        (_pathway(steps=[]), "at least 1 item"),
    ],
)
def test_a_malformed_pathway_is_refused_naming_the_file_and_the_problem(tmp_path, body, message):
    folder = _folder(tmp_path, "test_path.v1.yaml", body)
    with pytest.raises(PathwayError) as info:
        load_registry(folder)
    assert "test_path.v1.yaml" in str(info.value)
    assert message in str(info.value)


def test_a_file_that_is_not_yaml_is_refused(tmp_path):
    folder = _folder(tmp_path, "test_path.v1.yaml", {})
    (folder / "test_path.v1.yaml").write_text("key: [unclosed", encoding="utf-8")
    with pytest.raises(PathwayError, match=r"test_path.v1.yaml: not valid YAML"):
        load_registry(folder)

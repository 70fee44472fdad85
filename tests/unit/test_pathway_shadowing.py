"""A pathway file in the extra folder may add versions, never silently replace a shipped one."""

from __future__ import annotations

import pytest
import yaml

from tracker.errors import PathwayError
from tracker.pathway import BUILTIN_DIR, load_registry


def _copy(folder, source: str, name: str, **changes: object) -> None:
    body = yaml.safe_load((BUILTIN_DIR / source).read_text(encoding="utf-8"))
    body.update(changes)
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(yaml.safe_dump(body), encoding="utf-8")


def test_a_file_with_a_shipped_pathways_key_and_version_is_refused_naming_both_files(tmp_path):
    extra = tmp_path / "extra"
    # Same key and version as the shipped file, with one step fewer: it would change what
    # eu_citizen v1 means for every case already on it.
    body = yaml.safe_load((BUILTIN_DIR / "eu_citizen.v1.yaml").read_text(encoding="utf-8"))
    body["steps"] = [s for s in body["steps"] if s["id"] != "tax_id"]
    for s in body["steps"]:
        s["needs"] = [n for n in s.get("needs", []) if n != "tax_id"]
    extra.mkdir()
    (extra / "eu_citizen.v1.yaml").write_text(yaml.safe_dump(body), encoding="utf-8")
    with pytest.raises(PathwayError) as info:
        load_registry(BUILTIN_DIR, extra)
    message = str(info.value)
    assert str(extra / "eu_citizen.v1.yaml") in message
    assert str(BUILTIN_DIR / "eu_citizen.v1.yaml") in message
    assert "next version" in message


def test_a_new_version_in_the_extra_folder_is_added_beside_the_shipped_one(tmp_path):
    extra = tmp_path / "extra"
    _copy(extra, "eu_citizen.v1.yaml", "eu_citizen.v2.yaml", version=2)
    registry = load_registry(BUILTIN_DIR, extra)
    assert {v for k, v in registry.pathways if k == "eu_citizen"} == {1, 2}
    assert registry.get("eu_citizen").version == 2

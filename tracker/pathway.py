"""Pathways as data: versioned YAML files, validated on load, chosen by the newcomer's profile."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from tracker.enums import OrgKind, Profile, Purpose
from tracker.errors import PathwayError
from tracker.schemas import NEWCOMER_FIELDS

BUILTIN_DIR = Path(__file__).parent / "pathways"
_BASIS = re.compile(r"^(opened|started|move_in|arrival|permit_expiry|done:[a-z_]+)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalText(_Strict):
    de: str = Field(min_length=1)
    en: str = Field(min_length=1)


class OrganisationSeed(_Strict):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=40)
    name: str = Field(min_length=1)
    kind: OrgKind
    receives_handoffs: bool = True


class CatalogueStep(_Strict):
    title: LocalText
    partner_fields: list[str] = Field(default_factory=lambda: ["given_name", "family_name"])
    outcomes: list[str] = Field(default_factory=list)

    @field_validator("partner_fields")
    @classmethod
    def _known_fields(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(NEWCOMER_FIELDS))
        if unknown:
            raise ValueError(f"unknown newcomer field(s): {', '.join(unknown)}")
        return value


class LegalClock(_Strict):
    """A deadline set by law, counted in days or calendar months from its basis."""

    basis: str
    days: int | None = None
    months: int | None = Field(default=None, ge=0)
    days_accelerated: int | None = None
    months_accelerated: int | None = Field(default=None, ge=0)
    reference: str = Field(min_length=1)

    @model_validator(mode="after")
    def _one_unit(self) -> LegalClock:
        if (self.days is None) == (self.months is None):
            raise ValueError("a legal clock needs either days or months (not both)")
        if self.days is not None and self.months_accelerated is not None:
            raise ValueError("a clock in days takes days_accelerated, not months_accelerated")
        if self.months is not None and self.days_accelerated is not None:
            raise ValueError("a clock in months takes months_accelerated, not days_accelerated")
        return self

    def length(self, *, accelerated: bool) -> tuple[int | None, int | None]:
        """(days, months) for this newcomer; the accelerated procedure may shorten it."""
        if self.months is not None:
            fast = self.months_accelerated if accelerated else None
            return None, fast if fast is not None else self.months
        fast = self.days_accelerated if accelerated else None
        return (fast if fast is not None else self.days), None

    @field_validator("basis")
    @classmethod
    def _known_basis(cls, value: str) -> str:
        if not _BASIS.match(value):
            raise ValueError(
                "basis must be one of opened, started, move_in, arrival, permit_expiry "
                f"or done:<step>, not {value!r}"
            )
        return value


class PathwayStep(_Strict):
    id: str = Field(pattern=r"^[a-z_]+$")
    owner: str
    needs: list[str] = Field(default_factory=list)
    service_days: int | None = Field(default=None, ge=0)
    legal_clock: LegalClock | None = None


class Pathway(_Strict):
    key: str = Field(pattern=r"^[a-z_]+$")
    version: int = Field(ge=1)
    profile: Profile
    title: LocalText
    steps: list[PathwayStep] = Field(min_length=1)

    def step(self, step_id: str) -> PathwayStep:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def step_ids(self) -> list[str]:
        return [s.id for s in self.steps]


def _read_yaml(path: Path) -> object:
    try:
        with path.open(encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except yaml.YAMLError as exc:
        raise PathwayError(
            "{file}: not valid YAML: {detail}",
            file=path.name,
            detail=exc,
        ) from exc


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _check_graph(name: str, pathway: Pathway, catalogue: dict[str, CatalogueStep]) -> None:
    ids = pathway.step_ids
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise PathwayError(
            "{file}: step listed twice: {steps}",
            file=name,
            steps=", ".join(duplicates),
        )
    for step in pathway.steps:
        if step.id not in catalogue:
            raise PathwayError(
                "{file}: unknown step '{step}' (not in the step catalogue)",
                file=name,
                step=step.id,
            )
        for need in step.needs:
            if need not in ids:
                raise PathwayError(
                    "{file}: step '{step}' needs unknown step '{need}'",
                    file=name,
                    step=step.id,
                    need=need,
                )
        clock = step.legal_clock
        if clock and clock.basis.startswith("done:") and clock.basis[5:] not in ids:
            raise PathwayError(
                "{file}: step '{step}' clock counts from unknown step '{basis}'",
                file=name,
                step=step.id,
                basis=clock.basis[5:],
            )
    # Depth-first search for a cycle, reporting the loop itself.
    needs = {s.id: s.needs for s in pathway.steps}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in needs[node]:
            if state.get(nxt) == 1:
                loop = [*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt]
                raise PathwayError(
                    "{file}: prerequisites form a cycle: {loop}",
                    file=name,
                    loop=" -> ".join(loop),
                )
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for sid in ids:
        if sid not in state:
            visit(sid, [sid])


@dataclass(frozen=True)
class PathwayRegistry:
    """All known pathway versions plus the step catalogue and seed organisations."""

    pathways: dict[tuple[str, int], Pathway]
    catalogue: dict[str, CatalogueStep]
    organisations: list[OrganisationSeed]

    def get(self, key: str, version: int | None = None) -> Pathway:
        if version is None:
            versions = [v for (k, v) in self.pathways if k == key]
            if not versions:
                raise PathwayError(
                    "no pathway called '{key}'",
                    key=key,
                )
            version = max(versions)
        try:
            return self.pathways[(key, version)]
        except KeyError:
            raise PathwayError(
                "pathway '{key}' has no version {version}",
                key=key,
                version=version,
            ) from None

    def for_profile(self, profile: Profile) -> Pathway:
        keys = sorted({p.key for p in self.pathways.values() if p.profile == profile})
        if not keys:
            raise PathwayError(
                "no pathway for profile '{profile}'",
                profile=profile.value,
            )
        return self.get(keys[0])

    def latest(self) -> list[Pathway]:
        return [self.get(k) for k in sorted({k for k, _ in self.pathways})]


def load_registry(*folders: Path) -> PathwayRegistry:
    """Load and validate every ``*.vN.yaml`` pathway in the folders; raise on the first problem."""
    folders = folders or (BUILTIN_DIR,)
    base = folders[0]
    raw_catalogue = _read_yaml(base / "catalogue.yaml")
    if not isinstance(raw_catalogue, dict):
        raise PathwayError("catalogue.yaml: expected a mapping of step id to step")
    catalogue: dict[str, CatalogueStep] = {}
    for sid, body in raw_catalogue.items():
        try:
            catalogue[str(sid)] = CatalogueStep.model_validate(body)
        except ValidationError as exc:
            raise PathwayError(
                "catalogue.yaml: step '{step}': {detail}",
                step=sid,
                detail=_describe(exc),
            ) from exc
    raw_orgs = _read_yaml(base / "organisations.yaml")
    if not isinstance(raw_orgs, list):
        raise PathwayError("organisations.yaml: expected a list of organisations")
    try:
        organisations = [OrganisationSeed.model_validate(o) for o in raw_orgs]
    except ValidationError as exc:
        raise PathwayError(
            "organisations.yaml: {detail}",
            detail=_describe(exc),
        ) from exc
    org_keys = {o.key for o in organisations}

    pathways: dict[tuple[str, int], Pathway] = {}
    sources: dict[tuple[str, int], Path] = {}
    for folder in folders:
        for path in sorted(folder.glob("*.v*.yaml")):
            match = re.fullmatch(r"([a-z_]+)\.v(\d+)\.yaml", path.name)
            if not match:
                raise PathwayError(
                    "{file}: pathway files are named <key>.v<version>.yaml",
                    file=path.name,
                )
            raw = _read_yaml(path)
            try:
                pathway = Pathway.model_validate(raw)
            except ValidationError as exc:
                raise PathwayError(
                    "{file}: {detail}",
                    file=path.name,
                    detail=_describe(exc),
                ) from exc
            if (pathway.key, pathway.version) != (match.group(1), int(match.group(2))):
                raise PathwayError(
                    "{file}: file name does not match key '{key}' and version {version}",
                    file=path.name,
                    key=pathway.key,
                    version=pathway.version,
                )
            _check_graph(path.name, pathway, catalogue)
            for step in pathway.steps:
                if step.owner not in org_keys:
                    raise PathwayError(
                        "{file}: step '{step}' is owned by unknown organisation '{owner}'",
                        file=path.name,
                        step=step.id,
                        owner=step.owner,
                    )
            ident = (pathway.key, pathway.version)
            if ident in sources:
                # A case keeps the version it started with: two different files under one
                # version would change what that version means for cases under way.
                raise PathwayError(
                    "{file}: pathway '{key}' version {version} is already defined by {other}; "
                    "give the new file the next version number",
                    file=path,
                    key=pathway.key,
                    version=pathway.version,
                    other=sources[ident],
                )
            sources[ident] = path
            pathways[ident] = pathway
    if not pathways:
        raise PathwayError(
            "no pathway files found in {folders}",
            folders=", ".join(map(str, folders)),
        )
    return PathwayRegistry(pathways=pathways, catalogue=catalogue, organisations=organisations)


@lru_cache(maxsize=1)
def get_registry() -> PathwayRegistry:
    from tracker.config import get_settings

    extra = get_settings().pathways_dir
    return load_registry(BUILTIN_DIR, extra) if extra else load_registry(BUILTIN_DIR)


def profile_for(*, eu_citizen: bool, purpose: Purpose) -> Profile:
    """The pathway profile a newcomer's facts choose."""
    if eu_citizen:
        return Profile.eu_citizen
    return Profile.student if purpose == Purpose.study else Profile.skilled_worker

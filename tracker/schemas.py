"""Validated input for changes, shared by the CLI, the CSV import and the dashboard."""

from __future__ import annotations

import re
from datetime import date

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tracker.clocks import local_today
from tracker.enums import Purpose

# EU member states (ISO 3166-1 alpha-2). EEA and Swiss citizens also enjoy free movement.
EU_COUNTRIES = frozenset(
    "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE".split()
)
FREE_MOVEMENT = EU_COUNTRIES | {"IS", "LI", "NO", "CH"}
LANGUAGES = ("de", "en", "ar", "uk", "tr", "ru", "fa", "fr", "es")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _no_control(value: str) -> str:
    # PostgreSQL refuses a NUL in text, and no name, address or number holds a control character.
    if _CONTROL.search(value):
        raise ValueError("contains control characters (such as a line break)")
    return value


def _clean_name(value: str) -> str:
    # Check before collapsing whitespace, which would turn a stray newline into a space.
    value = " ".join(_no_control(value).split())
    if not value:
        raise ValueError("must not be empty")
    return value


def _email_address(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    assert value is not None
    if not _EMAIL.match(_no_control(value)):
        raise ValueError("is not an e-mail address")
    return value


def _phone_number(value: str | None) -> str | None:
    """Kept as written (a note such as "abends" may be on its own line); a NUL or a bell is
    refused."""
    if not value:
        return None
    _no_control(value.replace("\n", " ").replace("\r", " ").replace("\t", " "))
    return value


class NewcomerIn(BaseModel):
    """The facts about a newcomer that a case needs; names may be in any script."""

    model_config = ConfigDict(str_strip_whitespace=True, extra="forbid")

    given_name: str = Field(max_length=200)
    family_name: str = Field(max_length=200)
    birth_date: date | None = None
    nationality: str | None = Field(default=None, description="ISO 3166-1 alpha-2 code")
    eu_citizen: bool | None = Field(default=None, description="derived from nationality if unset")
    purpose: Purpose = Purpose.work
    accelerated_procedure: bool = False
    email: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=50)
    preferred_language: str = "de"
    first_contact_date: date | None = None
    arrival_date: date | None = None
    move_in_date: date | None = None
    permit_expiry: date | None = None

    @field_validator("given_name", "family_name")
    @classmethod
    def _names(cls, value: str) -> str:
        return _clean_name(value)

    @field_validator("nationality")
    @classmethod
    def _nationality(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        # ASCII first: upper-casing "ß" gives "SS", and "ﬁ" gives "FI" (Finland).
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError("must be a two-letter country code such as DE, IN or UA")
        return value.upper()

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return _email_address(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return _phone_number(value)

    @field_validator("preferred_language")
    @classmethod
    def _language(cls, value: str) -> str:
        value = (value or "de").lower()
        if value not in LANGUAGES:
            raise ValueError(f"must be one of {', '.join(LANGUAGES)}")
        return value

    @field_validator("birth_date")
    @classmethod
    def _birth_date(cls, value: date | None) -> date | None:
        if value is not None and not (date(1900, 1, 1) <= value <= local_today()):
            raise ValueError("is not a plausible birth date")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> NewcomerIn:
        if self.eu_citizen is None:
            self.eu_citizen = self.nationality in FREE_MOVEMENT if self.nationality else False
        if self.arrival_date and self.move_in_date and self.move_in_date < self.arrival_date:
            raise ValueError("move_in_date lies before arrival_date")
        if self.birth_date and self.arrival_date and self.arrival_date < self.birth_date:
            raise ValueError("arrival_date lies before birth_date")
        return self

    @property
    def match_key(self) -> str:
        return match_key(self.family_name, self.given_name, self.birth_date)


def match_key(family_name: str, given_name: str, birth_date: date | None) -> str:
    """Key for spotting the same person twice: case-folded names plus birth date."""
    born = birth_date.isoformat() if birth_date else ""
    family = " ".join(family_name.split()).casefold()
    given = " ".join(given_name.split()).casefold()
    return f"{family}|{given}|{born}"


class NewcomerUpdate(BaseModel):
    """Facts that change during a journey; unset fields stay as they are."""

    model_config = ConfigDict(extra="forbid")

    arrival_date: date | None = None
    move_in_date: date | None = None
    permit_expiry: date | None = None
    email: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=50)
    preferred_language: str | None = None
    accelerated_procedure: bool | None = None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return _email_address(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return _phone_number(value)


# Every fact the tracker keeps about a newcomer, in the order screens and files list them.
NEWCOMER_FIELDS: tuple[str, ...] = tuple(NewcomerIn.model_fields)

"""Who the demo is about: its sign-ins for every role, and the newcomers' nationalities."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

from sqlalchemy import select
from sqlalchemy.orm import Session

from tracker.admin.organisations import SETUP
from tracker.admin.passwords import hash_password
from tracker.admin.users import add_user
from tracker.config import get_settings
from tracker.enums import Role
from tracker.errors import PermissionDenied
from tracker.models import User

DEMO_PASSWORD = "willkommen"  # demo data only; never used outside `onboarding demo`

# username, display name, role, organisation
DEMO_USERS: list[tuple[str, str, Role, str | None]] = [
    ("admin", "Admin (Demo)", Role.admin, None),
    ("cm.mueller", "Sabine Müller", Role.case_manager, "kim-bochum"),
    ("cm.yilmaz", "Deniz Yılmaz", Role.case_manager, "kim-bochum"),
    ("cm.kowalski", "Marta Kowalski", Role.case_manager, "kim-bochum"),
    ("lead.schmidt", "Dr. Jörg Schmidt", Role.leadership, None),
    ("stadt.weber", "Jana Weber", Role.partner_agent, "stadt-bochum"),
    ("ihk.hoffmann", "Lukas Hoffmann", Role.partner_agent, "ihk-mr"),
    ("afa.becker", "Miriam Becker", Role.partner_agent, "afa-bochum"),
    ("hwk.wagner", "Tobias Wagner", Role.partner_agent, "hwk-do"),
    ("thga.nowak", "Ewa Nowak", Role.partner_agent, "thga"),
    ("vbw.schulz", "Peter Schulz", Role.partner_agent, "vbw"),
    ("akafoe.fischer", "Lea Fischer", Role.partner_agent, "akafoe"),
]
PARTNER_BY_ORG = {org: name for name, _, role, org in DEMO_USERS if role == Role.partner_agent}
CASE_MANAGERS = [name for name, _, role, _ in DEMO_USERS if role == Role.case_manager]

# Faker locale -> nationality. Weighted toward the groups Bochum actually sees.
NON_EU = [
    ("en_IN", "IN", 14),
    ("tr_TR", "TR", 10),
    ("uk_UA", "UA", 8),
    ("ar_EG", "EG", 5),
    ("fa_IR", "IR", 5),
    ("vi_VN", "VN", 6),
    ("zh_CN", "CN", 6),
    ("pt_BR", "BR", 5),
    ("es_MX", "MX", 3),
    ("id_ID", "ID", 4),
    ("en_PH", "PH", 4),
    ("ne_NP", "NP", 4),
    ("bn_BD", "BD", 4),
    ("ka_GE", "GE", 3),
    ("en_NG", "NG", 5),
    ("en_PK", "PK", 4),
    ("sq_AL", "AL", 2),
    ("ar_JO", "SY", 3),
]
EU = [
    ("pl_PL", "PL", 6),
    ("it_IT", "IT", 4),
    ("es_ES", "ES", 4),
    ("ro_RO", "RO", 6),
    ("el_GR", "GR", 3),
    ("hr_HR", "HR", 3),
    ("bg_BG", "BG", 3),
    ("nl_NL", "NL", 1),
]
# Only what names and user names draw on ({{year}} in some user names): loading all of
# Faker's providers for 26 locales took seconds, and the draws are the same.
FAKER_PROVIDERS = [
    "faker.providers.person",
    "faker.providers.internet",
    "faker.providers.date_time",
]
LANG_BY_LOCALE = {"uk_UA": "uk", "tr_TR": "tr", "ar_EG": "ar", "ar_JO": "ar", "fa_IR": "fa"}
PROFILES = ["skilled_worker", "student", "eu_citizen"]
PROFILE_WEIGHTS = [45, 40, 15]


@lru_cache(maxsize=1)
def demo_hash() -> str:
    # One Argon2 hash for the shared demo password keeps test setup fast.
    return hash_password(DEMO_PASSWORD)


def refuse_in_production() -> None:
    """Demo data carries sign-ins with a published password: never in production."""
    if get_settings().environment == "production":
        raise PermissionDenied(
            "ONBOARDING_ENVIRONMENT=production: demo data (and its sign-ins with a published "
            "password) is refused; load it on a development machine."
        )


def ensure_demo_users(session: Session, *, now: datetime | None = None) -> list[str]:
    """Create the demo sign-ins that are missing; returns the usernames added."""
    refuse_in_production()
    existing = set(session.scalars(select(User.username)))
    added = []
    for username, display, role, org in DEMO_USERS:
        if username in existing:
            continue
        add_user(
            session,
            actor=SETUP,
            username=username,
            display_name=display,
            role=role,
            organisation=org,
            email=f"{username}@demo.invalid",
            password_hash=demo_hash(),
            now=now,
        )
        added.append(username)
    return added

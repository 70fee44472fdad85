"""Password hashing with Argon2id (argon2-cffi); plain passwords are never stored."""

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.profiles import RFC_9106_LOW_MEMORY

from tracker.errors import ValidationFailed

# RFC 9106's second recommended profile, named rather than left to the library's defaults (a
# new argon2-cffi version must not quietly weaken new hashes): Argon2id, 3 passes over 64 MiB,
# 4 lanes. One verify takes about 0.15 s on one core of the development machines, which with
# the lockout (tracker.admin.auth: 5 failures, 15 minutes) makes guessing online hopeless.
# Stored hashes carry their own parameters, so hashes made with other settings still verify.
_hasher = PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)


MIN_LENGTH = 10  # NIST SP 800-63B asks for at least 8; length beats composition rules


def hash_password(password: str) -> str:
    if len(password) < MIN_LENGTH:
        raise ValidationFailed(
            "A password needs at least {length} characters.",
            length=MIN_LENGTH,
        )
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    if not password_hash:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False

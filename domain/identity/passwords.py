"""argon2id hashing, off the event loop (a hash costs tens of milliseconds of CPU)."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
#: Verified against when the account does not exist, so timing does not reveal that.
_DUMMY = _hasher.hash("carewire-dummy-password")

MIN_LENGTH = 8
MAX_LENGTH = 256


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(stored: str | None, password: str) -> bool:
    def _verify() -> bool:
        try:
            return _hasher.verify(stored or _DUMMY, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(_verify)

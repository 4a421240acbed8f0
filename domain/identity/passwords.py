"""argon2id hashing, off the event loop (a hash costs tens of milliseconds of CPU), and the
NIST SP 800-63B checks of a new password: length, not a known common password, not built from
the person's own email or name, not trivially guessable."""

from __future__ import annotations

import asyncio
import re
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

_hasher = PasswordHasher()
#: Verified against when the account does not exist, so timing does not reveal that.
_DUMMY = _hasher.hash("carewire-dummy-password")

MIN_LENGTH = 8
MAX_LENGTH = 256
#: zxcvbn's score runs 0-4; 0 and 1 mean under a million guesses (a throttled online attack).
MIN_SCORE = 2
#: zxcvbn refuses longer input and its cost grows with length; the start is what it scores.
_SCORED_LENGTH = 72
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
#: Context words (NIST: "the name of the service") refused inside any password.
_SERVICE_WORDS = ("carewire",)


@lru_cache(maxsize=1)
def _common() -> frozenset[str]:
    """zxcvbn's list of the 30,000 most common passwords from breach corpora."""
    return frozenset(FREQUENCY_LISTS["passwords"])


def _squash(value: str) -> str:
    return _NOT_ALNUM.sub("", value.lower())


def weakness(password: str, *, email: str, name: str | None) -> str | None:
    """Why this password must not be set, or None. Length is checked by the caller."""
    if password.lower() in _common() or _squash(password) in _common():
        return "is one of the most commonly used passwords; choose another"
    squashed = _squash(password)
    local = _squash(email.split("@", 1)[0])
    words = [_squash(w) for w in re.split(r"[\s._-]+", name or "") if len(_squash(w)) >= 4]
    context = [c for c in (local, _squash(name or ""), *words, *_SERVICE_WORDS) if len(c) >= 4]
    rest = squashed
    for word in sorted(context, key=len, reverse=True):
        rest = rest.replace(word, "")
    if rest != squashed and len(rest) < MIN_LENGTH:
        # Built from the person's own details: those do not count towards the length.
        return (f"without your email address, your name or the service's name it must still "
                f"have {MIN_LENGTH} letters or digits")
    inputs = [email, email.split("@", 1)[0], *(name or "").split(), *_SERVICE_WORDS]
    if zxcvbn(password[:_SCORED_LENGTH], user_inputs=inputs)["score"] < MIN_SCORE:
        return "is too easy to guess; use a longer phrase of uncommon words"
    return None


async def hash_password(password: str) -> str:
    return await asyncio.to_thread(_hasher.hash, password)


async def verify_password(stored: str | None, password: str) -> bool:
    def _verify() -> bool:
        try:
            return _hasher.verify(stored or _DUMMY, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(_verify)

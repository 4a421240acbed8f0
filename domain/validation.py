"""Checks of input that the type system cannot express; each names the field it refuses."""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache

from domain.errors import invalid_field

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[1-9][0-9]{6,14}$")


def _no_nul(value: str, field: str) -> None:
    """PostgreSQL text cannot hold NUL; refuse it by name rather than fail in the database."""
    if "\x00" in value:
        raise invalid_field(field, "must not contain NUL characters")


def email(value: str, field: str = "email") -> str:
    _no_nul(value, field)
    v = value.strip().lower()
    if len(v) > 254 or not _EMAIL.match(v):
        raise invalid_field(field, "not a valid email address")
    return v


def phone(value: str | None, field: str = "phone") -> str | None:
    if value is None:
        return None
    v = value.replace(" ", "")
    if not _PHONE.match(v):
        raise invalid_field(field, "use E.164 format, e.g. +919812345678")
    return v


def text(value: str, field: str, *, max_length: int = 200, allow_empty: bool = False) -> str:
    _no_nul(value, field)
    v = value.strip()
    if not v and not allow_empty:
        raise invalid_field(field, "must not be empty")
    if len(v) > max_length:
        raise invalid_field(field, f"at most {max_length} characters")
    return v


#: Files in the zoneinfo folder that are not IANA zone names: `localtime` is whatever the
#: server's clock is set to (it would move with the host), the others are build artefacts.
_NOT_ZONES = frozenset({"localtime", "posixrules", "Factory"})


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(z for z in zoneinfo.available_timezones()
                     if z not in _NOT_ZONES and not z.startswith(("posix/", "right/")))


def timezone(value: str, field: str = "timezone") -> str:
    if value not in _zones():
        raise invalid_field(field, f"unknown IANA time zone {value!r}")
    return value


def msgspec_field_error(message: str, prefix: str = "") -> tuple[str, str]:
    """Split msgspec's "Expected `int`, got `str` - at `$.a.b`" into ("a.b", "Expected ...")."""
    text, _, where = message.partition(" - at `$")
    path = where.rstrip("`").lstrip(".")
    if not path and "unknown field `" in text:
        path = text.split("`")[1]
        text = "unknown field"
    elif not path and "missing required field `" in text:
        path = text.split("`")[1]
        text = "required"
    elif "unknown field `" in text or "missing required field `" in text:
        path = f"{path}.{text.split('`')[1]}"
        text = "unknown field" if "unknown" in text else "required"
    # msgspec names a dict's value `[...]`, not by its key: name the dict itself
    path = path.split("[...]")[0].replace("[", ".").replace("]", "").rstrip(".")
    full = ".".join(p for p in (prefix, path) if p) or prefix or "body"
    return full, text

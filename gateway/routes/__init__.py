"""REST routes. Each declares its permission (`permission=` in the decorator, a row of
domain/access/permissions.txt, or "public" / "authenticated"); the app refuses to start otherwise.
Routes translate HTTP to domain calls and hold no business rules."""

from __future__ import annotations

from typing import Annotated

import msgspec

PUBLIC = "public"
AUTHENTICATED = "authenticated"

Email = Annotated[str, msgspec.Meta(max_length=254)]
Password = Annotated[str, msgspec.Meta(max_length=256)]
Name = Annotated[str, msgspec.Meta(max_length=200)]
Phone = Annotated[str, msgspec.Meta(max_length=32)]


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies refuse unknown fields: nothing is mass-assigned by accident."""

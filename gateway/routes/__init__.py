"""REST routes. Each declares its permission (`permission=` in the decorator, a row of
domain/access/permissions.txt, or "public" / "authenticated"); the app refuses to start otherwise.
Routes translate HTTP to domain calls and hold no business rules."""

from __future__ import annotations

from typing import Annotated

import msgspec

PUBLIC = "public"
AUTHENTICATED = "authenticated"

#: PostgreSQL text cannot hold NUL, so no request string may carry one (see gateway/problems.py).
NO_NUL = "^[^\\x00]*$"

Email = Annotated[str, msgspec.Meta(max_length=254, pattern=NO_NUL)]
Password = Annotated[str, msgspec.Meta(max_length=256, pattern=NO_NUL)]
Name = Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]
Phone = Annotated[str, msgspec.Meta(max_length=32, pattern=NO_NUL)]


class Body(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Request bodies refuse unknown fields: nothing is mass-assigned by accident."""

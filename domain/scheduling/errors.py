"""Scheduling's refusals that carry more than a message."""

from __future__ import annotations

from typing import Any

import msgspec

from domain.errors import Conflict
from domain.scheduling.models import SlotOut


class BookingConflict(Conflict):
    """The slot is taken: carries the nearest free alternatives."""

    def __init__(self, message: str, *, alternatives: list[SlotOut], **kw: Any) -> None:
        super().__init__(message, **kw)
        self.extra = {"alternatives": msgspec.to_builtins(alternatives)}

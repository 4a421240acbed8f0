from __future__ import annotations

import uuid

from litestar import Router, get
from litestar.params import FromPath, FromQuery

from domain.events import queries
from gateway.context import CurrentPrincipal


@get("/{clinic_id:str}/events", permission="events:read")
async def list_events(
    principal: CurrentPrincipal, clinic_id: FromPath[uuid.UUID], after: FromQuery[int] = 0,
    limit: FromQuery[int] = 100,
) -> queries.EventPage:
    """The clinic's event log after a sequence, as the caller may see it (same as socket resume)."""
    return await queries.list_events(principal, clinic_id, after=after, limit=limit)


router = Router(path="/clinics", route_handlers=[list_events], tags=["events"])

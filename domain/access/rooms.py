"""Socket room names and who may be in them. Rooms are named by the server, never the client."""

from __future__ import annotations

import uuid

from domain.access.roles import Role
from domain.principal import Principal


def clinic_staff(clinic_id: uuid.UUID) -> str:
    return f"clinic:{clinic_id}:staff"


def clinic_role(clinic_id: uuid.UUID, role: Role) -> str:
    return f"clinic:{clinic_id}:role:{role.value}"


def user(user_id: uuid.UUID) -> str:
    return f"user:{user_id}"


def doctor(user_id: uuid.UUID) -> str:
    return f"doctor:{user_id}"


def queue(queue_id: uuid.UUID) -> str:
    """A waiting-room board: ticket numbers and positions only."""
    return f"queue:{queue_id}"


def session(session_id: uuid.UUID) -> str:
    """Internal: lets a revoked session's sockets be found. Never subscribable."""
    return f"session:{session_id}"


def rooms_for(principal: Principal) -> list[str]:
    """The rooms a socket joins on connect."""
    rooms = [user(principal.user_id)]
    for m in principal.memberships:
        rooms.append(clinic_role(m.clinic_id, m.role))
        if m.role is not Role.PATIENT:
            rooms.append(clinic_staff(m.clinic_id))
        if m.role is Role.DOCTOR:
            rooms.append(doctor(principal.user_id))
    return sorted(set(rooms))


def visible_rooms(principal: Principal, clinic_id: uuid.UUID) -> list[str]:
    """Rooms whose events the principal may read in this clinic (resume, GET /events)."""
    rooms = [r for r in rooms_for(principal)]
    if principal.is_super_admin:
        rooms += [clinic_staff(clinic_id), *(clinic_role(clinic_id, r) for r in Role)]
    return sorted(set(rooms))


def may_join(principal: Principal, room: str) -> bool:
    """Whether a `subscribe` to this room is allowed, by the same rules as connect-time joins."""
    if room in rooms_for(principal):
        return True
    parts = room.split(":")
    if not principal.is_super_admin or len(parts) < 3 or parts[0] != "clinic":
        return False
    try:
        uuid.UUID(parts[1])
    except ValueError:
        return False
    return (parts[2] == "staff" and len(parts) == 3) or (
        len(parts) == 4 and parts[2] == "role" and parts[3] in Role.__members__
    )

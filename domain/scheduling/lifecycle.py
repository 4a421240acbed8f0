"""The appointment state machine: one table, enforced on every path (REST, sockets, jobs)."""

from __future__ import annotations

from domain.errors import Conflict
from domain.scheduling.models import Status

ALLOWED: dict[Status, frozenset[Status]] = {
    Status.PENDING_PAYMENT: frozenset({Status.SCHEDULED, Status.EXPIRED, Status.CANCELLED}),
    Status.SCHEDULED: frozenset({Status.CONFIRMED, Status.CHECKED_IN, Status.CANCELLED,
                                 Status.NO_SHOW}),
    Status.CONFIRMED: frozenset({Status.CHECKED_IN, Status.CANCELLED, Status.NO_SHOW}),
    Status.CHECKED_IN: frozenset({Status.IN_PROGRESS, Status.CANCELLED, Status.NO_SHOW}),
    Status.IN_PROGRESS: frozenset({Status.COMPLETED}),
}
#: Statuses that hold the doctor's time (the exclusion constraint ignores the others).
ACTIVE = frozenset(Status) - {Status.CANCELLED, Status.NO_SHOW, Status.EXPIRED}
#: Statuses of an appointment still to come (what a patient's booking quota counts).
UPCOMING = frozenset({Status.PENDING_PAYMENT, Status.SCHEDULED, Status.CONFIRMED})
RESCHEDULABLE = frozenset({Status.SCHEDULED, Status.CONFIRMED})
FOLLOW_UP_FROM = frozenset({Status.CHECKED_IN, Status.IN_PROGRESS, Status.COMPLETED})

#: REST action name -> target status.
ACTIONS: dict[str, Status] = {
    "confirm": Status.CONFIRMED,
    "check-in": Status.CHECKED_IN,
    "start": Status.IN_PROGRESS,
    "complete": Status.COMPLETED,
    "no-show": Status.NO_SHOW,
    "cancel": Status.CANCELLED,
}
#: What a patient may do to their own appointment.
PATIENT_ACTIONS = frozenset({"confirm", "cancel", "reschedule"})


def check(current: Status, target: Status) -> None:
    if target not in ALLOWED.get(current, frozenset()):
        raise Conflict(f"cannot move an appointment from {current} to {target}",
                       resource_type="appointment")

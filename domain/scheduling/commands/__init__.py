"""Changes to schedules and appointments, cut by what they do:

- `schedules`: doctors' weekly hours and time off;
- `booking`: booking (one or a series), rescheduling, follow-ups;
- `transitions`: the lifecycle moves, the handlers other contexts register to react to them in
  the same transaction, and the jobs that move appointments (expiry, payment).

Overlaps are refused by the database (exclusion constraint), transitions by the state machine
in lifecycle.py; each change records its transition, its event and its audit row in one
transaction."""

from domain.scheduling.commands.booking import book, follow_up, lock_doctor, reschedule
from domain.scheduling.commands.schedules import (
    MAX_MINUTES,
    MIN_MINUTES,
    add_time_off,
    put_schedule,
)
from domain.scheduling.commands.transitions import (
    apply_transition,
    expire_unpaid,
    mark_paid,
    on_booking,
    on_expiry,
    on_transition,
    permission_for,
    transition,
)
from domain.scheduling.errors import BookingConflict
from domain.scheduling.events import ScheduleUpdated

__all__ = [
    "MAX_MINUTES", "MIN_MINUTES", "BookingConflict", "ScheduleUpdated", "add_time_off",
    "apply_transition", "book", "expire_unpaid", "follow_up", "lock_doctor", "mark_paid",
    "on_booking", "on_expiry", "on_transition", "permission_for", "put_schedule", "reschedule",
    "transition",
]

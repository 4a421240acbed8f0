"""Free appointment slots from weekly rules, busy intervals and a clinic's time zone.

Pure: no I/O, no clock. Rules are wall-clock hours in the clinic's zone and are resolved to
absolute instants date by date, so a 09:00 start stays 09:00 local on both sides of a DST
change. Inside a working window slots step in absolute time, so the hour a clock skips is not
offered and the hour a clock repeats is offered once per real hour.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from operator import itemgetter
from zoneinfo import ZoneInfo

import msgspec

from domain.errors import invalid_field

MIN_SLOT_MINUTES = 5
MAX_SLOT_MINUTES = 480
MAX_RANGE = timedelta(days=62)
DEFAULT_APPOINTMENT_TYPES: frozenset[str] = frozenset({"in_person", "video"})

_ONE_DAY = timedelta(days=1)


class Rule(msgspec.Struct, frozen=True):
    """Weekly working hours: `weekday` 0 = Monday ... 6 = Sunday, `start` < `end` on one local day."""

    weekday: int
    start: time
    end: time
    location_id: uuid.UUID | None = None
    appointment_types: frozenset[str] = DEFAULT_APPOINTMENT_TYPES

    def __post_init__(self) -> None:
        if not 0 <= self.weekday <= 6:
            raise invalid_field("weekday", "must be 0 (Monday) to 6 (Sunday)")
        for name, value in (("start", self.start), ("end", self.end)):
            if value.tzinfo is not None:
                raise invalid_field(name, "a local time of day, without a UTC offset")
        if self.end <= self.start:
            raise invalid_field("end", "must be after start, on the same day")


class Slot(msgspec.Struct, frozen=True):
    start: datetime
    end: datetime
    location_id: uuid.UUID | None


def overlaps(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> bool:
    """Whether half-open [a0, a1) and [b0, b1) share an instant; touching ends do not, nor do empty ones."""
    return max(a[0], b[0]) < min(a[1], b[1])


def free_slots(
    *,
    tz: ZoneInfo,
    rules: Sequence[Rule],
    slot_minutes: int,
    start: datetime,
    end: datetime,
    busy: Sequence[tuple[datetime, datetime]],
    now: datetime,
    appointment_type: str | None = None,
) -> list[Slot]:
    """Bookable slots in [start, end), from `now` on, clear of `busy`, sorted, in `tz`.

    A rule's local start or end that falls in a spring-forward gap moves forward by the gap; one
    that falls in a fall-back overlap takes its first occurrence. Two rules that produce the same
    absolute start give one slot: the earlier rule in `rules` (its location) wins.
    """
    _validate(slot_minutes, start, end)
    if not _aware(now):
        raise TypeError("now must be timezone-aware")
    step = timedelta(minutes=slot_minutes)
    lo = start.astimezone(UTC)
    hi = end.astimezone(UTC)
    floor = max(lo, now.astimezone(UTC))
    if floor + step > hi:
        return []

    by_weekday: list[list[Rule]] = [[] for _ in range(7)]
    for rule in rules:
        if appointment_type is None or appointment_type in rule.appointment_types:
            by_weekday[rule.weekday].append(rule)
    if not any(by_weekday):
        return []

    # Each rule on each local date is one window, cut to [floor, hi) and to whole steps from its
    # start. The day before the range is included: a rule ending in a gap that spans midnight
    # reaches into the next date.
    windows: list[tuple[datetime, datetime, uuid.UUID | None]] = []  # (first start, last start, location)
    day = floor.astimezone(tz).date() - _ONE_DAY
    last_day = hi.astimezone(tz).date()
    while day <= last_day:
        for rule in by_weekday[day.weekday()]:
            w_start = _instant(day, rule.start, tz)
            top = min(_instant(day, rule.end, tz), hi)
            first = w_start
            if first < floor:
                first += -((w_start - floor) // step) * step  # the first step at or after floor
            if first + step <= top:
                windows.append((first, first + ((top - first) // step - 1) * step, rule.location_id))
        day += _ONE_DAY
    if not windows:
        return []

    blocked = _sorted_busy(busy, floor, hi)
    n = len(blocked)
    i = 0
    out: list[Slot] = []
    append = out.append
    # Converting to local time is the costliest step; back-to-back slots share a boundary.
    prev_end, prev_end_local = lo, lo.astimezone(tz)
    for first, last, location_id in _ordered_windows(windows, step):
        s = first
        while s <= last:
            e = s + step
            while i < n and blocked[i][1] <= s:
                i += 1
            if i == n or blocked[i][0] >= e:
                s_local = prev_end_local if s == prev_end else s.astimezone(tz)
                prev_end, prev_end_local = e, e.astimezone(tz)
                append(Slot(s_local, prev_end_local, location_id))
            s = e
    return out


def _ordered_windows(
    windows: list[tuple[datetime, datetime, uuid.UUID | None]], step: timedelta
) -> list[tuple[datetime, datetime, uuid.UUID | None]]:
    """The windows by start with no slot start in two of them: when windows overlap, each start
    becomes a one-slot window, and the first in `windows` (date, then rule order) that has the
    start gives its location."""
    in_order = sorted(windows, key=itemgetter(0))
    if all(a[1] < b[0] for a, b in pairwise(in_order)):  # the usual case: windows apart
        return in_order
    found: dict[datetime, uuid.UUID | None] = {}
    for first, last, location_id in windows:  # in date, then rule order
        s = first
        while s <= last:
            found.setdefault(s, location_id)
            s += step
    return [(s, s, location_id) for s, location_id in sorted(found.items(), key=itemgetter(0))]


def _validate(slot_minutes: int, start: datetime, end: datetime) -> None:
    if isinstance(slot_minutes, bool) or not MIN_SLOT_MINUTES <= slot_minutes <= MAX_SLOT_MINUTES:
        raise invalid_field("slot_minutes", f"must be {MIN_SLOT_MINUTES} to {MAX_SLOT_MINUTES} minutes")
    if not _aware(start):
        raise invalid_field("from", "must include a UTC offset")
    if not _aware(end):
        raise invalid_field("to", "must include a UTC offset")
    if end <= start:
        raise invalid_field("to", "must be after from")
    if end - start > MAX_RANGE:
        raise invalid_field("to", f"at most {MAX_RANGE.days} days after from")


def _sorted_busy(
    busy: Sequence[tuple[datetime, datetime]], lo: datetime, hi: datetime
) -> list[tuple[datetime, datetime]]:
    """The non-empty busy intervals that touch [lo, hi), in UTC, sorted by start; naive ones raise TypeError.

    They may overlap or nest: the sweep in `free_slots` drops an interval once it has ended
    before the current slot, and slots only move forward, so no merging is needed.
    """
    relevant: list[tuple[datetime, datetime]] = []
    for a, b in busy:
        # Comparing with the aware lo and hi first makes a naive datetime raise TypeError.
        if b > lo and a < hi and a < b:
            relevant.append((a.astimezone(UTC), b.astimezone(UTC)))
    relevant.sort()
    return relevant


def _instant(day: date, t: time, tz: ZoneInfo) -> datetime:
    """Local `t` on `day` in `tz` as a UTC instant, as `datetime(..., tzinfo=tz).astimezone(UTC)` gives.

    fold=0 (the default): a time in a spring-forward gap is read with the offset before the gap,
    so it lands the gap's length later; a repeated time is read as its first occurrence.
    """
    if t.fold:
        t = t.replace(fold=0)
    offset = tz.utcoffset(datetime.combine(day, t))
    assert offset is not None  # a ZoneInfo always has one
    return datetime.combine(day, t, UTC) - offset


def _aware(d: datetime) -> bool:
    return d.tzinfo is not None and d.utcoffset() is not None


__all__ = ["Rule", "Slot", "free_slots", "overlaps"]

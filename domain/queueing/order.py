"""The one definition of queue order and of the wait estimate. The doctor's view, reception's,
each patient's position and the board all come from `waiting_order`; nothing else sorts."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta

from domain.queueing.models import Entry, EntryStatus, Pace, Priority, Stats

RANK = {Priority.EMERGENCY: 0, Priority.URGENT: 1, Priority.NORMAL: 2}
_TICK = timedelta(microseconds=1)


def sort_key(entry: Entry) -> tuple[int, datetime, datetime, int]:
    """Priority class, then the time the entry queues by, then arrival, then ticket number
    (unique in a queue, so the order is total)."""
    return RANK[entry.priority], entry.order_at, entry.checked_in_at, entry.ticket_no


def waiting_order(entries: Iterable[Entry]) -> list[Entry]:
    return sorted((e for e in entries if e.status is EntryStatus.WAITING), key=sort_key)


def arrival_order_at(scheduled_at: datetime, checked_in_at: datetime, grace: timedelta) -> datetime:
    """On time (up to the grace after the start): queue by the appointment's time, so arriving
    early gains nothing. Late: queue by arrival."""
    return scheduled_at if checked_in_at <= scheduled_at + grace else checked_in_at


def end_of_line(entries: Iterable[Entry], now: datetime) -> datetime:
    """A queue time behind everyone now waiting (a skip, a requeue)."""
    latest = max((e.order_at for e in entries if e.status is EntryStatus.WAITING), default=now)
    return max(now, latest) + _TICK


def pace(durations_minutes: list[float], slot_minutes: int) -> Pace:
    if durations_minutes:
        return Pace("measured", round(sum(durations_minutes) / len(durations_minutes), 2),
                    len(durations_minutes))
    return Pace("slot_length", float(slot_minutes), 0)


def etas(entries: Iterable[Entry], p: Pace, now: datetime) -> dict[str, tuple[int, int]]:
    """entry id -> (position, minutes until the doctor is expected to see them).

    Ahead of position 1: what is left of consultations under way (at the measured pace),
    and every called patient not yet in the room."""
    listed = list(entries)
    per = p.minutes_per_patient
    remaining = sum(
        max(0.0, per - (now - e.started_at).total_seconds() / 60)
        for e in listed if e.status is EntryStatus.IN_CONSULTATION and e.started_at
    )
    called = sum(1 for e in listed if e.status is EntryStatus.CALLED)
    return {
        str(e.id): (i + 1, math.ceil(remaining + (called + i) * per))
        for i, e in enumerate(waiting_order(listed))
    }


def stats(entries: Iterable[Entry]) -> Stats:
    listed = list(entries)
    waits = sorted((e.called_at - e.checked_in_at).total_seconds() / 60
                   for e in listed if e.called_at is not None)
    p90 = waits[max(0, math.ceil(0.9 * len(waits)) - 1)] if waits else None  # nearest rank
    return Stats(
        waiting=sum(1 for e in listed if e.status is EntryStatus.WAITING),
        average_wait_minutes=round(sum(waits) / len(waits), 1) if waits else None,
        p90_wait_minutes=round(p90, 1) if p90 is not None else None,
        consultations_done=sum(1 for e in listed if e.status is EntryStatus.DONE),
        no_shows=sum(1 for e in listed if e.removed_reason in ("skipped_out", "no_show")),
    )


def ticket_letters(index: int) -> str:
    """0 -> A, 25 -> Z, 26 -> AA ... : each of a clinic's queues on a day gets its own."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters


def ticket(letter: str, number: int) -> str:
    return f"{letter}-{number:03d}"

"""Time domain.scheduling.availability.free_slots on two realistic loads; prints p50/p95 in ms.

  (a) one doctor, 30 days: two rules every day (09:00-13:00 and 14:00-18:00, two locations),
      15-minute slots, about a third of the time booked;
  (b) twenty doctors, 7 days each (twenty calls, timed together): the same shape of week, each
      doctor with their own bookings, 30-minute slots.

The ranges straddle the Europe/London spring-forward (29 March 2026). Pure CPU, no services.

Run from the repository root:
    .venv/bin/python bench/availability.py [--runs 200]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time as clock
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from domain.scheduling.availability import Rule, free_slots

TZ = ZoneInfo("Europe/London")
LOC_A, LOC_B = uuid.uuid4(), uuid.uuid4()
RULES = [rule for wd in range(7)
         for rule in (Rule(wd, time(9), time(13), LOC_A), Rule(wd, time(14), time(18), LOC_B))]


def bookings(
    rng: random.Random, start: datetime, days: int, minutes: int, share: float
) -> list[tuple[datetime, datetime]]:
    """Roughly `share` of the working slots booked, in random order, as a database would return them."""
    out = []
    for d in range(days):
        day = (start + timedelta(days=d)).astimezone(TZ).date()
        for hour in [*range(9, 13), *range(14, 18)]:
            for minute in range(0, 60, minutes):
                if rng.random() < share:
                    a = datetime(day.year, day.month, day.day, hour, minute, tzinfo=TZ).astimezone(UTC)
                    out.append((a, a + timedelta(minutes=minutes)))
    rng.shuffle(out)
    return out


def measure(fn: Callable[[], int], runs: int) -> tuple[list[float], list[float], int]:
    """Wall-clock and CPU milliseconds per run (CPU time is what a busy machine does not inflate)."""
    for _ in range(10):
        fn()
    wall, cpu = [], []
    n = 0
    for _ in range(runs):
        c0, t0 = clock.process_time(), clock.perf_counter()
        n = fn()
        t1, c1 = clock.perf_counter(), clock.process_time()
        wall.append((t1 - t0) * 1000)
        cpu.append((c1 - c0) * 1000)
    return wall, cpu, n


def p50_p95(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=20)
    return f"p50 {statistics.median(ms):6.3f} ms  p95 {q[18]:6.3f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(7)

    start = datetime(2026, 3, 16, tzinfo=TZ)
    busy_30 = bookings(rng, start, 30, 15, 0.35)
    now = start - timedelta(days=1)

    def one_doctor_30_days() -> int:
        return len(free_slots(tz=TZ, rules=RULES, slot_minutes=15, start=start,
                              end=start + timedelta(days=30), busy=busy_30, now=now))

    week = datetime(2026, 3, 25, tzinfo=TZ)
    doctors = [bookings(rng, week, 7, 30, 0.35) for _ in range(20)]

    def twenty_doctors_7_days() -> int:
        return sum(len(free_slots(tz=TZ, rules=RULES, slot_minutes=30, start=week,
                                  end=week + timedelta(days=7), busy=busy, now=now)) for busy in doctors)

    print(f"free_slots, {args.runs} runs each, Python {sys.version.split()[0]}, load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for name, fn, busy_count in [
        ("1 doctor x 30 days, 15-min slots", one_doctor_30_days, len(busy_30)),
        ("20 doctors x 7 days, 30-min slots", twenty_doctors_7_days, sum(map(len, doctors))),
    ]:
        wall, cpu, slots = measure(fn, args.runs)
        print(f"  {name} ({slots} free slots, {busy_count} busy intervals)")
        print(f"    wall  {p50_p95(wall)}")
        print(f"    cpu   {p50_p95(cpu)}")

if __name__ == "__main__":
    main()

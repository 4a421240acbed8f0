"""domain.scheduling.availability: pure unit and property tests (no servers, no fixtures)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.errors import Invalid
from domain.scheduling.availability import Rule, Slot, free_slots, overlaps

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
KOLKATA = ZoneInfo("Asia/Kolkata")
LOC_A = uuid.UUID("00000000-0000-0000-0000-00000000000a")
LOC_B = uuid.UUID("00000000-0000-0000-0000-00000000000b")
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # a `now` long before every range

# 2026-06-01 is a Monday.
MONDAY = date(2026, 6, 1)


def t(s: str) -> time:
    return time.fromisoformat(s)


def local(tz: ZoneInfo, d: date, hhmm: str, fold: int = 0) -> datetime:
    return datetime.combine(d, t(hhmm), tzinfo=tz).replace(fold=fold)


def day_range(tz: ZoneInfo, d: date, days: int = 1) -> tuple[datetime, datetime]:
    return local(tz, d, "00:00"), local(tz, d + timedelta(days=days), "00:00")


def slots_for(tz: ZoneInfo, rules: list[Rule], d: date, *, days: int = 1, slot_minutes: int = 30,
              busy: list[tuple[datetime, datetime]] | None = None, now: datetime = EPOCH,
              appointment_type: str | None = None) -> list[Slot]:
    start, end = day_range(tz, d, days)
    return free_slots(tz=tz, rules=rules, slot_minutes=slot_minutes, start=start, end=end,
                      busy=busy or [], now=now, appointment_type=appointment_type)


def hhmm(slots: list[Slot]) -> list[str]:
    return [s.start.strftime("%H:%M") for s in slots]


# --- the ordinary cases -------------------------------------------------------------------------


def test_typical_morning_gives_eight_half_hour_slots_at_exact_local_times():
    slots = slots_for(KOLKATA, [Rule(0, t("09:00"), t("13:00"))], MONDAY)
    assert hhmm(slots) == ["09:00", "09:30", "10:00", "10:30", "11:00", "11:30", "12:00", "12:30"]
    assert slots[0].start == datetime(2026, 6, 1, 3, 30, tzinfo=UTC)
    assert slots[-1].end == local(KOLKATA, MONDAY, "13:00")
    for s in slots:
        assert s.start.tzinfo is KOLKATA and s.end.tzinfo is KOLKATA
        assert s.end - s.start == timedelta(minutes=30)
        assert s.location_id is None


def test_slots_are_expressed_in_the_clinic_zone_whatever_zone_the_range_is_given_in():
    start, end = (x.astimezone(UTC) for x in day_range(LONDON, MONDAY))
    slots = free_slots(tz=LONDON, rules=[Rule(0, t("09:00"), t("10:00"))], slot_minutes=30,
                       start=start, end=end, busy=[], now=EPOCH)
    assert [s.start.isoformat() for s in slots] == ["2026-06-01T09:00:00+01:00", "2026-06-01T09:30:00+01:00"]
    assert all(s.start.tzinfo is LONDON for s in slots)


def test_rule_applies_only_on_its_weekday():
    rules = [Rule(2, t("09:00"), t("10:00"))]  # Wednesday
    slots = slots_for(LONDON, rules, MONDAY, days=7)
    assert [s.start.date() for s in slots] == [date(2026, 6, 3)] * 2
    assert slots_for(LONDON, rules, MONDAY, days=2) == []


def test_the_last_slot_ends_at_or_before_the_window_end():
    slots = slots_for(LONDON, [Rule(0, t("09:00"), t("10:00"))], MONDAY, slot_minutes=25)
    assert hhmm(slots) == ["09:00", "09:25"]
    assert slots[-1].end == local(LONDON, MONDAY, "09:50")
    assert slots_for(LONDON, [Rule(0, t("09:00"), t("09:20"))], MONDAY, slot_minutes=25) == []


def test_two_rules_on_the_same_day_each_give_their_slots_in_order():
    rules = [Rule(0, t("14:00"), t("15:00"), location_id=LOC_B), Rule(0, t("09:00"), t("10:00"), LOC_A)]
    slots = slots_for(LONDON, rules, MONDAY)
    assert hhmm(slots) == ["09:00", "09:30", "14:00", "14:30"]
    assert [s.location_id for s in slots] == [LOC_A, LOC_A, LOC_B, LOC_B]


def test_location_is_carried_through():
    slots = slots_for(LONDON, [Rule(0, t("09:00"), t("10:00"), location_id=LOC_A)], MONDAY)
    assert [s.location_id for s in slots] == [LOC_A, LOC_A]


def test_overlapping_rules_give_one_slot_per_start_and_the_rule_listed_first_wins():
    early, late = Rule(0, t("09:00"), t("10:00"), LOC_A), Rule(0, t("09:30"), t("11:00"), LOC_B)
    slots = slots_for(LONDON, [early, late], MONDAY)
    assert hhmm(slots) == ["09:00", "09:30", "10:00", "10:30"]
    assert [s.location_id for s in slots] == [LOC_A, LOC_A, LOC_B, LOC_B]
    slots = slots_for(LONDON, [late, early], MONDAY)
    assert hhmm(slots) == ["09:00", "09:30", "10:00", "10:30"]
    assert [s.location_id for s in slots] == [LOC_A, LOC_B, LOC_B, LOC_B]


def test_rules_that_only_touch_are_not_merged_or_doubled():
    rules = [Rule(0, t("10:00"), t("11:00"), LOC_B), Rule(0, t("09:00"), t("10:00"), LOC_A)]
    slots = slots_for(LONDON, rules, MONDAY, slot_minutes=20)
    assert hhmm(slots) == ["09:00", "09:20", "09:40", "10:00", "10:20", "10:40"]
    assert [s.location_id for s in slots] == [LOC_A] * 3 + [LOC_B] * 3


def test_appointment_type_filters_rules():
    rules = [
        Rule(0, t("09:00"), t("10:00"), LOC_A, frozenset({"in_person"})),
        Rule(0, t("16:00"), t("17:00"), None, frozenset({"video"})),
        Rule(0, t("12:00"), t("12:30")),  # both types by default
    ]
    assert hhmm(slots_for(LONDON, rules, MONDAY)) == ["09:00", "09:30", "12:00", "16:00", "16:30"]
    assert hhmm(slots_for(LONDON, rules, MONDAY, appointment_type="in_person")) == ["09:00", "09:30", "12:00"]
    assert hhmm(slots_for(LONDON, rules, MONDAY, appointment_type="video")) == ["12:00", "16:00", "16:30"]
    assert slots_for(LONDON, rules, MONDAY, appointment_type="home_visit") == []


def test_busy_removes_exactly_the_overlapping_slots_and_keeps_back_to_back_ones():
    rule = Rule(0, t("09:00"), t("13:00"))
    busy = [
        (local(LONDON, MONDAY, "09:30"), local(LONDON, MONDAY, "10:00")),  # exactly one slot
        (local(LONDON, MONDAY, "11:10"), local(LONDON, MONDAY, "11:40")),  # straddles two
        (local(LONDON, MONDAY, "12:59"), local(LONDON, MONDAY, "13:30")),  # one minute of the last
    ]
    slots = slots_for(LONDON, [rule], MONDAY, busy=busy)
    assert hhmm(slots) == ["09:00", "10:00", "10:30", "12:00"]


def test_busy_given_unsorted_overlapping_and_in_other_zones():
    rule = Rule(0, t("09:00"), t("13:00"))
    busy = [
        (local(LONDON, MONDAY, "12:00").astimezone(NEW_YORK), local(LONDON, MONDAY, "12:30").astimezone(UTC)),
        (local(LONDON, MONDAY, "09:00"), local(LONDON, MONDAY, "10:15")),
        (local(LONDON, MONDAY, "09:10"), local(LONDON, MONDAY, "09:20")),  # inside the one above
        (local(LONDON, MONDAY, "11:15"), local(LONDON, MONDAY, "11:15")),  # empty: blocks nothing
        (local(LONDON, MONDAY, "12:45"), local(LONDON, MONDAY, "12:35")),  # inverted: blocks nothing
        (local(LONDON, MONDAY, "09:05"), local(LONDON, MONDAY, "09:06")),  # a later start, an earlier end
    ]
    slots = slots_for(LONDON, [rule], MONDAY, busy=busy)
    assert hhmm(slots) == ["10:30", "11:00", "11:30", "12:30"]


def test_now_cuts_off_slots_that_start_before_it():
    rule = Rule(0, t("09:00"), t("11:00"))
    assert hhmm(slots_for(LONDON, [rule], MONDAY, now=local(LONDON, MONDAY, "09:40"))) == ["10:00", "10:30"]
    assert hhmm(slots_for(LONDON, [rule], MONDAY, now=local(LONDON, MONDAY, "10:00"))) == ["10:00", "10:30"]
    assert slots_for(LONDON, [rule], MONDAY, now=local(LONDON, MONDAY, "10:30") + timedelta(seconds=1)) == []


def test_slots_must_lie_wholly_inside_the_range():
    rule = Rule(0, t("09:00"), t("11:00"))
    slots = free_slots(tz=LONDON, rules=[rule], slot_minutes=30, start=local(LONDON, MONDAY, "09:15"),
                       end=local(LONDON, MONDAY, "10:45"), busy=[], now=EPOCH)
    assert hhmm(slots) == ["09:30", "10:00"]
    exactly_one = free_slots(tz=LONDON, rules=[rule], slot_minutes=30, start=local(LONDON, MONDAY, "10:00"),
                             end=local(LONDON, MONDAY, "10:30"), busy=[], now=EPOCH)
    assert hhmm(exactly_one) == ["10:00"]


def test_a_range_over_several_weeks_repeats_the_weekly_rule():
    slots = slots_for(LONDON, [Rule(4, t("09:00"), t("09:30"))], MONDAY, days=28)
    assert [s.start.date() for s in slots] == [date(2026, 6, 5) + timedelta(weeks=k) for k in range(4)]


# --- validation ---------------------------------------------------------------------------------


def call(**kw: object) -> list[Slot]:
    args: dict[str, object] = dict(tz=LONDON, rules=[Rule(0, t("09:00"), t("10:00"))], slot_minutes=30,
                                   start=local(LONDON, MONDAY, "00:00"), end=local(LONDON, MONDAY, "23:00"),
                                   busy=[], now=EPOCH)
    args.update(kw)
    return free_slots(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"slot_minutes": 4}, "slot_minutes"),
        ({"slot_minutes": 481}, "slot_minutes"),
        ({"slot_minutes": 0}, "slot_minutes"),
        ({"end": local(LONDON, MONDAY, "00:00")}, "to"),
        ({"end": local(LONDON, MONDAY, "00:00") - timedelta(hours=1)}, "to"),
        ({"end": local(LONDON, MONDAY, "00:00") + timedelta(days=62, microseconds=1)}, "to"),
        ({"start": datetime(2026, 6, 1)}, "from"),
        ({"end": datetime(2026, 6, 2)}, "to"),
    ],
)
def test_invalid_input_names_its_field(kw: dict[str, object], field: str):
    with pytest.raises(Invalid) as caught:
        call(**kw)
    assert [e.field for e in caught.value.errors] == [field]


def test_the_bounds_themselves_are_allowed():
    assert call(slot_minutes=5)
    assert call(slot_minutes=60)
    assert call(slot_minutes=480, end=local(LONDON, MONDAY, "00:00") + timedelta(days=62),
                rules=[Rule(0, t("08:00"), t("16:00"))])


def test_naive_now_or_busy_is_a_programming_error():
    with pytest.raises(TypeError):
        call(now=datetime(2026, 6, 1))
    with pytest.raises(TypeError):
        call(busy=[(datetime(2026, 6, 1, 9), datetime(2026, 6, 1, 10))])
    with pytest.raises(TypeError):
        call(busy=[(datetime(2026, 6, 1, 11), datetime(2026, 6, 1, 10))])  # even an inverted one
    with pytest.raises(TypeError):
        call(busy=[(datetime(2026, 6, 1, 9), datetime(2026, 6, 1, 10, tzinfo=UTC))])


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ((7, t("09:00"), t("10:00")), "weekday"),
        ((-1, t("09:00"), t("10:00")), "weekday"),
        ((0, t("10:00"), t("10:00")), "end"),
        ((0, t("10:00"), t("09:00")), "end"),
        ((0, time(9, tzinfo=UTC), t("10:00")), "start"),
        ((0, t("09:00"), time(10, tzinfo=UTC)), "end"),
    ],
)
def test_a_bad_rule_is_refused(args: tuple[int, time, time], field: str):
    with pytest.raises(Invalid) as caught:
        Rule(*args)
    assert [e.field for e in caught.value.errors] == [field]


# --- overlaps -----------------------------------------------------------------------------------


def h(n: float) -> datetime:
    return EPOCH + timedelta(hours=n)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((h(1), h(2)), (h(2), h(3)), False),  # back to back
        ((h(2), h(3)), (h(1), h(2)), False),
        ((h(1), h(3)), (h(2), h(4)), True),
        ((h(1), h(4)), (h(2), h(3)), True),  # containment
        ((h(1), h(2)), (h(1), h(2)), True),
        ((h(1), h(2)), (h(3), h(4)), False),
        ((h(1), h(4)), (h(2), h(2)), False),  # an empty interval overlaps nothing
        ((h(1), h(2)), (h(1.5).astimezone(NEW_YORK), h(5).astimezone(LONDON)), True),
    ],
)
def test_overlaps_is_half_open(a, b, expected):
    assert overlaps(a, b) is expected
    assert overlaps(b, a) is expected


# --- daylight saving time -----------------------------------------------------------------------

# The 2026 transitions: (zone, the day its clocks change).
TRANSITIONS = [
    pytest.param(LONDON, date(2026, 3, 29), id="london-spring"),
    pytest.param(LONDON, date(2026, 10, 25), id="london-autumn"),
    pytest.param(NEW_YORK, date(2026, 3, 8), id="new-york-spring"),
    pytest.param(NEW_YORK, date(2026, 11, 1), id="new-york-autumn"),
]
EVERY_DAY_9_TO_5 = [Rule(wd, t("09:00"), t("17:00")) for wd in range(7)]


@pytest.mark.parametrize(("tz", "transition_day"), TRANSITIONS)
def test_daily_nine_to_five_around_each_transition(tz: ZoneInfo, transition_day: date):
    first = transition_day - timedelta(days=2)
    slots = slots_for(tz, EVERY_DAY_9_TO_5, first, days=5)
    by_day: dict[date, list[Slot]] = {}
    for s in slots:
        by_day.setdefault(s.start.date(), []).append(s)
    assert sorted(by_day) == [first + timedelta(days=k) for k in range(5)]
    for day, day_slots in by_day.items():
        assert len(day_slots) == 16, day
        assert day_slots[0].start.replace(tzinfo=None) == datetime.combine(day, t("09:00"))
        assert day_slots[-1].end.replace(tzinfo=None) == datetime.combine(day, t("17:00"))
        starts_utc = [s.start.astimezone(UTC) for s in day_slots]
        assert all(b - a == timedelta(minutes=30) for a, b in pairwise(starts_utc))
    offset_before = by_day[first][0].start.utcoffset()
    offset_after = by_day[first + timedelta(days=4)][0].start.utcoffset()
    assert offset_before is not None and offset_after is not None
    assert abs(offset_after - offset_before) == timedelta(hours=1)
    assert (offset_after > offset_before) == (transition_day.month == 3)  # spring forward, fall back


@pytest.mark.parametrize(
    ("tz", "day", "real_hours", "labels"),
    [
        (LONDON, date(2026, 3, 29), 3, ["00:00", "00:30", "02:00", "02:30", "03:00", "03:30"]),
        (NEW_YORK, date(2026, 3, 8), 3, ["00:00", "00:30", "01:00", "01:30", "03:00", "03:30"]),
        (LONDON, date(2026, 10, 25), 5,
         ["00:00", "00:30", "01:00", "01:30", "01:00", "01:30", "02:00", "02:30", "03:00", "03:30"]),
        (NEW_YORK, date(2026, 11, 1), 5,
         ["00:00", "00:30", "01:00", "01:30", "01:00", "01:30", "02:00", "02:30", "03:00", "03:30"]),
    ],
)
def test_a_rule_spanning_the_transition_hour_counts_real_hours(tz, day, real_hours, labels):
    rule = Rule(day.weekday(), t("00:00"), t("04:00"))
    slots = slots_for(tz, [rule], day)
    assert len(slots) == real_hours * 2
    assert hhmm(slots) == labels
    starts_utc = [s.start.astimezone(UTC) for s in slots]
    assert len(set(starts_utc)) == len(starts_utc)
    assert all(b - a == timedelta(minutes=30) for a, b in pairwise(starts_utc))
    assert slots[-1].end.astimezone(UTC) - starts_utc[0] == timedelta(hours=real_hours)
    assert slots[-1].end.replace(tzinfo=None) == datetime.combine(day, t("04:00"))


def test_a_rule_starting_in_the_spring_gap_moves_forward_by_the_gap():
    day = date(2026, 3, 8)  # New York: 02:00 EST -> 03:00 EDT
    slots = slots_for(NEW_YORK, [Rule(day.weekday(), t("02:30"), t("04:00"))], day)
    assert [s.start.isoformat() for s in slots] == ["2026-03-08T03:30:00-04:00"]


def test_a_rule_starting_in_the_repeated_hour_takes_its_first_occurrence():
    day = date(2026, 11, 1)  # New York: 02:00 EDT -> 01:00 EST
    slots = slots_for(NEW_YORK, [Rule(day.weekday(), t("01:30"), t("02:00"))], day)
    # 01:30 EDT (05:30Z) to 02:00 EST (07:00Z): the second 01:00-02:00 hour is in it too.
    assert [s.start.isoformat() for s in slots] == [
        "2026-11-01T01:30:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T01:30:00-05:00",
    ]


def test_a_skipped_local_date_still_counts_and_its_hours_move_forward_by_the_gap():
    # Samoa skipped Friday 30 December 2011 (UTC-10 -> UTC+14). Friday's 09:00 read with the old
    # offset is Saturday 09:00, so a range that starts on Saturday still sees Friday's window.
    apia = ZoneInfo("Pacific/Apia")
    start = datetime(2011, 12, 31, tzinfo=apia)
    slots = free_slots(tz=apia, rules=[Rule(4, t("09:00"), t("10:00"), LOC_A)], slot_minutes=30,
                       start=start, end=start + timedelta(days=1), busy=[], now=EPOCH)
    assert [s.start.isoformat() for s in slots] == ["2011-12-31T09:00:00+14:00", "2011-12-31T09:30:00+14:00"]


# --- properties ---------------------------------------------------------------------------------

ZONES = [ZoneInfo("UTC"), NEW_YORK, LONDON, ZoneInfo("Australia/Lord_Howe")]  # Lord Howe: 30-minute DST
BASE = datetime(2026, 1, 1, tzinfo=UTC)
HORIZON_MINUTES = 400 * 24 * 60  # ranges land anywhere in 2026, so every transition gets visited


@st.composite
def rules_st(draw: st.DrawFn) -> Rule:
    start = draw(st.integers(0, 95).map(lambda q: q * 15) | st.integers(0, 24 * 60 - 2))
    length = draw(st.sampled_from([30, 60, 120, 240, 480, 720, 1439]) | st.integers(1, 1439))
    end = min(start + length, 24 * 60 - 1)
    return Rule(
        weekday=draw(st.integers(0, 6)),
        start=time(start // 60, start % 60),
        end=time(end // 60, end % 60),
        location_id=draw(st.sampled_from([None, LOC_A, LOC_B])),
        appointment_types=draw(st.sampled_from(
            [frozenset({"in_person", "video"}), frozenset({"in_person"}), frozenset({"video"})])),
    )


@st.composite
def scenario(draw: st.DrawFn) -> dict[str, object]:
    tz = draw(st.sampled_from(ZONES))
    start = BASE + timedelta(minutes=draw(st.integers(0, HORIZON_MINUTES)))
    span = draw(st.integers(0, 9)) * 24 * 60 + draw(st.integers(1, 24 * 60))  # minutes
    end = start + timedelta(minutes=span)

    grid = start.replace(minute=start.minute - start.minute % 5)  # slot edges mostly sit on 5 minutes

    def instant() -> datetime:
        if draw(st.booleans()):
            return grid + timedelta(minutes=5 * draw(st.integers(-24, span // 5 + 24)))
        return start + timedelta(minutes=draw(st.integers(-120, span + 120)))

    busy = []
    for _ in range(draw(st.integers(0, 12))):
        a = instant()
        length = draw(st.integers(0, 36).map(lambda k: 5 * k) | st.integers(0, 180))
        busy.append((a.astimezone(tz), a + timedelta(minutes=length)))
    return dict(
        tz=tz,
        rules=draw(st.lists(rules_st(), min_size=1, max_size=8)),
        slot_minutes=draw(st.sampled_from([5, 10, 15, 30, 60]) | st.integers(5, 90) | st.integers(5, 480)),
        start=start.astimezone(draw(st.sampled_from(ZONES))),
        end=end,
        busy=busy,
        now=EPOCH if draw(st.booleans()) else instant(),
        appointment_type=draw(st.sampled_from([None, None, "in_person", "video"])),
    )


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_every_slot_is_valid(sc: dict[str, object]):
    slots = free_slots(**sc)  # type: ignore[arg-type]
    tz: ZoneInfo = sc["tz"]  # type: ignore[assignment]
    step = timedelta(minutes=sc["slot_minutes"])  # type: ignore[arg-type]
    starts = [s.start for s in slots]
    assert starts == sorted(starts)
    assert len({s.astimezone(UTC) for s in starts}) == len(starts)
    for s in slots:
        assert s.start.tzinfo is tz and s.end.tzinfo is tz
        assert s.end - s.start == step
        assert sc["start"] <= s.start and s.end <= sc["end"]  # type: ignore[operator]
        assert s.start >= sc["now"]  # type: ignore[operator]
        assert not any(overlaps((s.start, s.end), b) for b in sc["busy"])  # type: ignore[attr-defined]
        allowed = [r for r in sc["rules"]  # type: ignore[attr-defined]
                   if sc["appointment_type"] is None or sc["appointment_type"] in r.appointment_types]
        # Every slot lies in the resolved window of an allowed rule with its location.
        assert any(r.location_id == s.location_id and _within_resolved_window(r, s, tz) for r in allowed)


def _within_resolved_window(rule: Rule, slot: Slot, tz: ZoneInfo) -> bool:
    """Whether the slot lies inside the rule's window on some nearby date, resolved as documented."""
    for delta in (-1, 0):
        d = slot.start.date() + timedelta(days=delta)
        if d.weekday() != rule.weekday:
            continue
        w0 = datetime.combine(d, rule.start, tzinfo=tz).astimezone(UTC)
        w1 = datetime.combine(d, rule.end, tzinfo=tz).astimezone(UTC)
        if w0 <= slot.start and slot.end <= w1:
            return True
    return False


@settings(max_examples=150, deadline=None)
@given(scenario())
def test_busy_removes_exactly_the_slots_it_overlaps(sc: dict[str, object]):
    with_busy = free_slots(**sc)  # type: ignore[arg-type]
    without = free_slots(**{**sc, "busy": []})  # type: ignore[arg-type]
    busy: list[tuple[datetime, datetime]] = sc["busy"]  # type: ignore[assignment]
    assert with_busy == [s for s in without if not any(overlaps((s.start, s.end), b) for b in busy)]


@settings(max_examples=150, deadline=None)
@given(scenario(), st.integers(0, 10 * 24 * 60))
def test_now_and_a_narrower_range_only_filter(sc: dict[str, object], cut: int):
    everything = free_slots(**{**sc, "now": EPOCH})  # type: ignore[arg-type]
    now: datetime = sc["now"]  # type: ignore[assignment]
    assert free_slots(**sc) == [s for s in everything if s.start >= now]  # type: ignore[arg-type]
    start: datetime = sc["start"]  # type: ignore[assignment]
    end: datetime = sc["end"]  # type: ignore[assignment]
    mid = start + timedelta(minutes=cut)
    if start < mid < end:
        left = free_slots(**{**sc, "now": EPOCH, "end": mid})  # type: ignore[arg-type]
        right = free_slots(**{**sc, "now": EPOCH, "start": mid})  # type: ignore[arg-type]
        assert left == [s for s in everything if s.end <= mid]
        assert right == [s for s in everything if s.start >= mid]


@settings(max_examples=200, deadline=None)
@given(scenario())
def test_matches_a_slow_reference(sc: dict[str, object]):
    assert free_slots(**sc) == _reference(**sc)  # type: ignore[arg-type]


def _reference(*, tz: ZoneInfo, rules: list[Rule], slot_minutes: int, start: datetime, end: datetime,
               busy: list[tuple[datetime, datetime]], now: datetime,
               appointment_type: str | None) -> list[Slot]:
    """Every date, every rule, every step from the window start, every busy interval: no shortcuts."""
    step = timedelta(minutes=slot_minutes)
    seen: dict[datetime, uuid.UUID | None] = {}
    d = start.astimezone(tz).date() - timedelta(days=2)
    while d <= end.astimezone(tz).date() + timedelta(days=1):
        for r in rules:
            if r.weekday != d.weekday():
                continue
            if appointment_type is not None and appointment_type not in r.appointment_types:
                continue
            s = datetime.combine(d, r.start, tzinfo=tz).astimezone(UTC)
            w1 = datetime.combine(d, r.end, tzinfo=tz).astimezone(UTC)
            while s + step <= w1:
                if (start <= s and s + step <= end and s >= now
                        and not any(overlaps((s, s + step), b) for b in busy)):
                    seen.setdefault(s, r.location_id)
                s += step
        d += timedelta(days=1)
    return [Slot(s.astimezone(tz), (s + step).astimezone(tz), loc) for s, loc in sorted(seen.items())]

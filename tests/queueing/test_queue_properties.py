"""One order behind every view, whatever happens: random sequences of queue actions over REST,
and after each step the waiting positions are 1..n in each queue, and the same in the staff
view, each waiting patient's own position and the board. A refusal (409) is fine; a 5xx never."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.queue_fixtures import board_token, book_day, fresh_day, make_clinic, queue_view

pytestmark = [pytest.mark.slow]  # hypothesis over live queues

#: action -> the answers it may get (a refusal of something the state does not allow is 409)
ACTIONS: dict[str, set[int]] = {
    "check_in": {200, 409},
    "call_next": {200, 409},
    "skip": {200, 409},
    "requeue": {200, 409},
    "priority": {200, 409},
    "transfer": {200, 409},
    "pause": {200},
    "resume": {200},
    "start": {200, 409},
    "complete": {200, 409},
    "cancel": {200, 409},
    "no_show": {200, 409},
}
ENTRY_ACTIONS = {"skip", "requeue", "priority", "transfer", "start", "complete"}
QUEUE_ACTIONS = {"call_next", "pause", "resume"}
FITTING = {"skip": {"waiting", "called"}, "requeue": {"called", "removed"},
           "priority": {"waiting", "called"}, "transfer": {"waiting", "called"},
           "start": {"waiting", "called"}, "complete": {"in_consultation"}}
PRIORITIES = ("emergency", "urgent", "normal")

#: weighted towards the queue's own actions (arrivals come first, see the test)
WEIGHTED = [*sorted(ACTIONS), "call_next", "call_next", "skip", "transfer", "start", "start",
            "complete", "complete", "requeue"]
steps = st.lists(st.tuples(st.sampled_from(WEIGHTED), st.integers(0, 7),
                           st.sampled_from(PRIORITIES)), min_size=1, max_size=14)


@pytest.fixture(scope="module")
def clinic(api, sa_token, clinic_factory, member_factory) -> dict[str, Any]:
    return make_clinic(api, sa_token, clinic_factory, member_factory, patients=6,
                       queue_max_skips=2)


class Day:
    """One example's day: six appointments with the first doctor and two with the second, the
    queues as they appear, and a board token per queue."""

    def __init__(self, api: Any, c: dict[str, Any]) -> None:
        self.api, self.c, self.desk = api, c, c["desk"]["token"]
        self.day = day = fresh_day()
        self.appointments = [*book_day(api, c, n=6, day=day),
                             *book_day(api, c, n=2, day=day, doctor=1, first_hour=13)]
        self.queues: dict[str, str] = {}  # doctor id -> queue id
        self.boards: dict[str, str] = {}  # queue id -> board token
        self.entries: dict[str, dict[str, Any]] = {}  # appointment id -> entry, as last seen
        self.checked_in: set[str] = set()  # appointment ids

    def post(self, path: str, allowed: set[int], **kw: Any) -> int:
        r = self.api.as_(self.desk, "POST", path, **kw)
        assert r.status_code in allowed, (path, kw, r.status_code, r.text)
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/problem+json"), r.text
        return r.status_code

    def apply(self, action: str, pick: int, priority: str) -> None:
        allowed = ACTIONS[action]
        if action in QUEUE_ACTIONS:
            doctor = self.c["doctors"][pick % 2]["user_id"]
            queue_id = self.queues.get(doctor)
            if queue_id is None:
                return  # nobody has checked in with this doctor yet: there is no queue
            path = f"/queues/{queue_id}/" + action.replace("_", "-")
            self.post(path, allowed)
            return
        appointment = self.appointments[pick % len(self.appointments)]
        if action == "check_in":
            if self.post(f"/appointments/{appointment['id']}/check-in", allowed) == 200:
                self.checked_in.add(appointment["id"])
        elif action in ("cancel", "no_show"):
            self.post(f"/appointments/{appointment['id']}/" + action.replace("_", "-"), allowed,
                      json={"reason": "property test"})
        else:
            # an entry of the day (one that could take the action, if there is one)
            entries = [self.entries[a["id"]] for a in self.appointments if a["id"] in self.entries]
            fitting = [e for e in entries if e["status"] in FITTING[action]] or entries
            if not fitting:
                return  # nobody has checked in yet
            entry = fitting[pick % len(fitting)]
            if action == "priority":
                self.post(f"/queue-entries/{entry['id']}/priority", allowed,
                          json={"priority": priority, "reason": "property test"})
            elif action == "transfer":
                to = next(d["user_id"] for d in self.c["doctors"]
                          if d["user_id"] != entry["doctor_id"])
                self.post(f"/queue-entries/{entry['id']}/transfer", allowed,
                          json={"doctor_id": to})
            else:
                self.post(f"/queue-entries/{entry['id']}/{action}", allowed)

    def listed(self) -> dict[str, dict[str, Any]]:
        """The day's queues, as the clinic's queue list shows them (created on first check-in,
        or by a transfer); each gets a board token when it first appears."""
        r = self.api.as_(self.desk, "GET", f"/clinics/{self.c['id']}/queues",
                         params={"date": self.day.isoformat()})
        assert r.status_code == 200, r.text
        views = {q["id"]: q for q in r.json()}
        for queue_id, view in views.items():
            assert view["date"] == self.day.isoformat()
            assert self.queues.setdefault(view["doctor_id"], queue_id) == queue_id  # one each
            if queue_id not in self.boards:
                self.boards[queue_id] = board_token(self.api, self.c, queue_id)
        return views

    def check(self) -> None:
        listed = self.listed()
        seen: dict[str, str] = {}  # appointment id -> queue id
        for doctor, queue_id in self.queues.items():
            view = queue_view(self.api, self.desk, queue_id)
            assert view["doctor_id"] == doctor
            assert order_of(view) == order_of(listed[queue_id])
            entries = view["entries"]
            for e in entries:
                assert e["appointment_id"] not in seen, f"two entries for {e['appointment_id']}"
                seen[e["appointment_id"]] = queue_id
                self.entries[e["appointment_id"]] = {**e, "doctor_id": doctor}
            waiting = [e for e in entries if e["status"] == "waiting"]
            # positions 1..n without gaps or repeats, listed in that order
            assert [e["position"] for e in waiting] == list(range(1, len(waiting) + 1)), entries
            assert all(e["position"] is None and e["eta_minutes"] is None
                       for e in entries if e["status"] != "waiting"), entries
            assert view["stats"]["waiting"] == len(waiting)
            etas = [e["eta_minutes"] for e in waiting]
            assert etas == sorted(etas), entries
            busy = any(e["status"] == "in_consultation" for e in entries)

            def same_eta(a: int | None, b: int | None, busy: bool = busy) -> bool:
                """Only a consultation under way makes the ETA move with the clock."""
                return a == b or (busy and a is not None and b is not None and abs(a - b) <= 1)

            # each waiting patient's own view
            for e in waiting:
                patient = next(a["patient"] for a in self.appointments
                               if a["id"] == e["appointment_id"])
                r = self.api.as_(patient["token"], "GET",
                                 f"/appointments/{e['appointment_id']}/queue-position")
                assert r.status_code == 200, r.text
                mine = r.json()
                assert (mine["queue_id"], mine["ticket"], mine["status"], mine["position"],
                        mine["ahead"]) == (queue_id, e["ticket"], "waiting", e["position"],
                                           e["position"] - 1), (mine, e)
                assert same_eta(mine["eta_minutes"], e["eta_minutes"]), (mine, e)

            # the board
            r = self.api.as_(self.boards[queue_id], "GET", f"/boards/{queue_id}/state")
            assert r.status_code == 200, r.text
            board = r.json()
            assert board["paused"] == view["paused"]
            assert [(t["ticket"], t["position"]) for t in board["waiting"]] == [
                (e["ticket"], e["position"]) for e in waiting], (board, entries)
            assert all(same_eta(t["eta_minutes"], e["eta_minutes"])
                       for t, e in zip(board["waiting"], waiting, strict=True)), (board, entries)
            assert board["called"] == [e["ticket"] for e in entries if e["status"] == "called"]
            assert board["in_consultation"] == [e["ticket"] for e in entries
                                                if e["status"] == "in_consultation"]

        # every checked-in appointment has exactly one entry, in one of the day's queues
        assert set(seen) == self.checked_in, (seen, self.checked_in)


def order_of(view: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(e["id"], e["ticket"], e["status"], e["position"]) for e in view["entries"]]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrivals=st.lists(st.integers(0, 7), unique=True, max_size=8), actions=steps)
def test_every_view_agrees_on_one_order(api, clinic, arrivals, actions) -> None:
    """Some arrive first (in any order), then anything may happen, arrivals included."""
    day = Day(api, clinic)
    for action, pick, priority in [*(("check_in", i, "normal") for i in arrivals), *actions]:
        day.apply(action, pick, priority)
        day.check()


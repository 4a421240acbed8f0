"""Notifications end to end on a stack of their own, over REST and the socket: patients choose
channels, book, are rescheduled, cancelled and called; a real worker reads the event log,
dispatches, and sends through local servers speaking ZeptoMail's and FCM's protocols. What the
providers received, the delivery log, the inbox and the socket tell what happened."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests import servers
from tests.communication.fakes.fcm import FcmFake, fcm_server, service_account
from tests.communication.fakes.zeptomail import FakeZeptoMail, zeptomail_server
from tests.communication.pipeline_stack import Stack, pipeline_stack
from tests.conftest import Api, unique_email
from tests.realtime_client import Recorder
from tests.servers import eventually, workers

pytestmark = [pytest.mark.slow]  # a stack, a server and a worker of their own

TOKEN = "zepto-notify-e2e-5b1c"
TZ = ZoneInfo("Asia/Kolkata")
ALL_DAY = [{"weekday": d, "start": "06:00", "end": "22:00"} for d in range(7)]
_slots = count()


def next_slot() -> str:
    """A free 15-minute slot a month or more ahead: far from any reminder's due time."""
    n = next(_slots)
    day = (datetime.now(TZ) + timedelta(days=30 + n // 40)).date()
    start = datetime(day.year, day.month, day.day, 7, tzinfo=TZ) + timedelta(minutes=15 * (n % 40))
    return start.isoformat()


class World:
    def __init__(self, api: Api, sa: str, stack: Stack, server: servers.Server, worker_log: Path,
                 zepto: FakeZeptoMail, fcm: FcmFake) -> None:
        self.api, self.sa, self.stack, self.server = api, sa, stack, server
        self.worker_log, self.zepto, self.fcm = worker_log, zepto, fcm
        self.clinic: dict[str, Any] = {}
        self.doctor: dict[str, Any] = {}
        self.desk: dict[str, Any] = {}

    def as_(self, token: str, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.api.as_(token, method, path, **kw)

    def member(self, role: str, *, name: str | None = None, phone: str | None = None,
               location: bool = False) -> dict[str, Any]:
        body = {"email": unique_email("notify"), "name": name or f"{role.title()} Person",
                "role": role, "password": "member-password-1", "phone": phone,
                "location_id": self.clinic["location"] if location else None}
        r = self.as_(self.sa, "POST", f"/clinics/{self.clinic['id']}/members", json=body)
        assert r.status_code == 201, r.text
        return {**r.json(), "email": body["email"],
                "token": self.api.token(body["email"], "member-password-1")}

    def patient(self, *, name: str | None = None, phone: str | None = None,
                device: bool = True, **preferences: Any) -> dict[str, Any]:
        """A patient with a push device (its FCM token under "fcm") and the given preferences."""
        p = self.member("PATIENT", name=name, phone=phone)
        if device:
            p["fcm"] = "notify-" + uuid.uuid4().hex * 2
            r = self.as_(p["token"], "POST", "/users/me/devices",
                         json={"kind": "fcm", "platform": "android", "token": p["fcm"]})
            assert r.status_code == 201, r.text
        if preferences:
            self.prefer(p, **preferences)
        return p

    def prefer(self, who: dict[str, Any], **preferences: Any) -> None:
        r = self.as_(who["token"], "PUT", "/users/me/notification-preferences", json=preferences)
        assert r.status_code == 200, r.text

    def book(self, who: dict[str, Any], reason: str = "check-up") -> str:
        """Booked by the patient themselves, over REST."""
        r = self.as_(who["token"], "POST", "/appointments", json={
            "clinic_id": self.clinic["id"], "doctor_id": self.doctor["user_id"],
            "patient_id": who["user_id"], "type": "in_person", "start": next_slot(),
            "location_id": self.clinic["location"], "reason": reason})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])

    def notifications(self, user_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return self.stack.db.fetch(
            """SELECT * FROM notifications WHERE user_id = $1::uuid
                 AND ($2::text IS NULL OR kind = $2) ORDER BY created_at""", user_id, kind)

    def messages(self, user_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        return self.stack.db.fetch(
            """SELECT * FROM communication_messages WHERE user_id = $1::uuid
                 AND ($2::text IS NULL OR kind = $2) ORDER BY created_at""", user_id, kind)

    def caught_up(self) -> bool:
        """The consumer has read the clinic's whole event log (every notice made or skipped)."""
        rows = self.stack.db.fetch(
            """SELECT s.last_seq AS head, coalesce(c.last_seq, 0) AS read
               FROM clinic_sequences s LEFT JOIN notification_cursors c USING (clinic_id)
               WHERE s.clinic_id = $1::uuid""", self.clinic["id"])
        return bool(rows) and rows[0]["read"] >= rows[0]["head"]

    def settled(self, user_id: str, kind: str) -> list[dict[str, Any]]:
        """The user's messages of `kind` once the consumer is caught up and none is on its way
        (a held one stays `queued`: call only when none is held)."""
        def done() -> bool:
            return self.caught_up() and all(m["status"] not in ("queued", "sending")
                                            for m in self.messages(user_id, kind))
        eventually(done)
        return self.messages(user_id, kind)

    def mails_to(self, address: str) -> list[dict[str, Any]]:
        return [m for m in self.zepto.accepted
                if m["body"]["to"][0]["email_address"]["address"] == address]

    def pushes_to(self, fcm_token: str) -> list[dict[str, Any]]:
        return [m for m in self.fcm.accepted if m["message"]["token"] == fcm_token]


@pytest.fixture(scope="module")
def world(env) -> Iterator[World]:
    worker_log = Path(tempfile.mkstemp(prefix="carewire-notify-worker-", suffix=".log")[1])
    with zeptomail_server(TOKEN) as zepto, fcm_server() as fcm, \
            pipeline_stack(env, zeptomail_url=zepto.url, fcm_url=fcm.url,
                           google_token_url=fcm.token_url, log_level="DEBUG") as stack:
        sa_json, public = service_account(project_id="carewire-notify-e2e")
        fcm.add_account(sa_json, public)
        srv = servers.Server(stack.env)
        srv.start()
        try:
            with httpx.Client(base_url=srv.base_url + "/api/v1", timeout=30) as client, \
                    workers(stack.env, 1, output=worker_log):
                api = Api(client)
                sa = api.token("root@isolated.test", "root-password-1")
                w = World(api, sa, stack, srv, worker_log, zepto, fcm)
                w.clinic = setup_clinic(w, sa_json)
                w.doctor = w.member("DOCTOR", location=True)
                w.desk = w.member("RECEPTIONIST", location=True)
                r = api.as_(sa, "PUT",
                            f"/clinics/{w.clinic['id']}/doctors/{w.doctor['user_id']}/schedule",
                            json={"rules": [{**rule, "location_id": w.clinic["location"]}
                                            for rule in ALL_DAY], "slot_minutes": 15})
                assert r.status_code == 200, r.text
                yield w
        finally:
            srv.stop()


def setup_clinic(w: World, fcm_account: str) -> dict[str, Any]:
    r = w.as_(w.sa, "POST", "/clinics", json={
        "name": "Notify E2E", "timezone": "Asia/Kolkata",
        "settings": {"booking_horizon_days": 730, "patient_max_future_appointments": 50}})
    assert r.status_code == 201, r.text
    clinic = r.json()
    r = w.as_(w.sa, "POST", f"/clinics/{clinic['id']}/locations",
              json={"name": "Main wing", "address": "1 Main street"})
    assert r.status_code == 201, r.text
    clinic["location"] = r.json()["id"]
    r = w.as_(w.sa, "PUT", f"/clinics/{clinic['id']}/communication/config", json={
        "channels": {"email": {"providers": ["zeptomail"],
                               "sender": {"from_address": "desk@notify.test"}},
                     "push": {"providers": ["fcm"]}},
        "credentials": {"zeptomail": {"api_key": TOKEN},
                        "fcm": {"service_account_json": fcm_account}}})
    assert r.status_code == 200, r.text
    return dict(clinic)


# --- a booking's confirmation -------------------------------------------------------------

def test_a_booking_is_confirmed_once_on_the_chosen_channel_and_in_the_inbox(world: World) -> None:
    w = world
    pat = w.patient(channels={"appointment.booked": ["email", "in_app"]})

    async def scenario() -> dict[str, Any]:
        sock = Recorder(w.server.base_url)
        await sock.connect(pat["token"])
        try:
            appointment = await asyncio.to_thread(w.book, pat)
            await sock.wait_for(lambda: bool(sock.named("notification.created")), timeout=30)
            (envelope,) = sock.named("notification.created")
            return {"appointment": appointment, "event": envelope["data"]}
        finally:
            await sock.close()

    seen = asyncio.run(scenario())
    event = seen["event"]
    assert set(event) == {"notification_id", "kind"}, event  # id and kind only: no text, no PHI
    assert event["kind"] == "appointment.booked"

    (message,) = w.settled(pat["user_id"], "appointment.booked")  # one message: email only
    assert (message["channel"], message["status"], message["provider"]) == (
        "email", "sent", "zeptomail")
    assert len(w.mails_to(pat["email"])) == 1 and w.pushes_to(pat["fcm"]) == []
    (notice,) = w.notifications(pat["user_id"], "appointment.booked")
    assert str(notice["id"]) == event["notification_id"]
    assert notice["status"] == "sent" and set(notice["channels"]) == {"email", "in_app"}
    assert str(notice["appointment_id"]) == seen["appointment"]

    r = w.as_(pat["token"], "GET", "/users/me/notifications")
    assert r.status_code == 200, r.text
    inbox = r.json()
    assert [i["id"] for i in inbox["items"]] == [event["notification_id"]]
    assert inbox["unread_count"] == 1 and inbox["items"][0]["title"]
    assert inbox["items"][0]["appointment_id"] == seen["appointment"]
    r = w.as_(pat["token"], "POST", f"/users/me/notifications/{event['notification_id']}/read")
    assert r.status_code == 200 and r.json()["read_at"], r.text
    assert w.as_(pat["token"], "GET", "/users/me/notifications").json()["unread_count"] == 0
    # the delivery log, as the recipient sees it: still the one message
    mine = w.as_(pat["token"], "GET", "/users/me/messages").json()["items"]
    assert [m["id"] for m in mine if m["kind"] == "appointment.booked"] == [str(message["id"])]
    assert len(w.mails_to(pat["email"])) == 1


def test_preference_changes_are_obeyed(world: World) -> None:
    w = world
    pat = w.patient()
    w.prefer(pat, channels={"appointment.booked": ["push"]})  # email off, push on
    first = w.book(pat)
    (push,) = w.settled(pat["user_id"], "appointment.booked")
    assert (push["channel"], push["status"], push["provider"]) == ("push", "sent", "fcm")
    assert len(w.pushes_to(pat["fcm"])) == 1 and w.mails_to(pat["email"]) == []
    assert w.pushes_to(pat["fcm"])[0]["message"]["data"]["appointment_id"] == first
    (notice,) = w.notifications(pat["user_id"], "appointment.booked")
    assert notice["channels"] == ["push"] and notice["in_app"] is False

    w.prefer(pat, channels={"appointment.booked": []})  # turned off: not even the inbox
    second = w.book(pat)
    eventually(lambda: len(w.notifications(pat["user_id"], "appointment.booked")) == 2
               and w.caught_up())
    latest = w.notifications(pat["user_id"], "appointment.booked")[-1]
    assert str(latest["appointment_id"]) == second
    assert (latest["status"], latest["channels"], latest["in_app"]) == ("no_channel", [], False)
    assert len(w.messages(pat["user_id"], "appointment.booked")) == 1  # the first booking's
    assert len(w.pushes_to(pat["fcm"])) == 1 and w.mails_to(pat["email"]) == []
    r = w.as_(pat["token"], "GET", "/users/me/notifications")
    assert r.json()["items"] == [] and r.json()["unread_count"] == 0


# --- quiet hours --------------------------------------------------------------------------

def quiet_now() -> tuple[dict[str, str], datetime]:
    """Quiet hours around now in UTC, and when they end (to the minute)."""
    now = datetime.now(UTC)
    end = (now + timedelta(hours=1)).replace(second=0, microsecond=0)
    start = now - timedelta(hours=1)
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M")}, end


def test_quiet_hours_hold_a_booking_confirmation_until_they_end(world: World) -> None:
    w = world
    quiet, until = quiet_now()
    pat = w.patient(channels={"appointment.booked": ["email", "push", "in_app"]},
                    quiet_hours=quiet, timezone="UTC")
    w.book(pat)
    eventually(lambda: len(w.messages(pat["user_id"], "appointment.booked")) == 2)
    held = w.messages(pat["user_id"], "appointment.booked")
    assert {m["channel"] for m in held} == {"email", "push"}
    for m in held:
        assert m["status"] == "queued" and m["sent_at"] is None, m
        assert m["next_at"] == until, (m["next_at"], until)
    # the inbox is not held; the providers got nothing
    assert len(w.as_(pat["token"], "GET", "/users/me/notifications").json()["items"]) == 1
    assert w.mails_to(pat["email"]) == [] and w.pushes_to(pat["fcm"]) == []


def test_quiet_hours_do_not_hold_a_queue_call(world: World) -> None:
    """Calls are about now (URGENT_KINDS): sent at once inside the patient's quiet hours."""
    w = world
    quiet, _ = quiet_now()
    pat = w.patient(channels={"queue.called": ["push"]}, quiet_hours=quiet, timezone="UTC")
    appointment = w.book(pat)
    queue_id = check_in(w, appointment)
    r = w.as_(w.desk["token"], "POST", f"/queues/{queue_id}/call-next")
    assert r.status_code == 200 and r.json()["appointment_id"] == appointment, r.text
    (call,) = w.settled(pat["user_id"], "queue.called")
    assert (call["channel"], call["status"]) == ("push", "sent")
    assert call["next_at"] <= call["sent_at"]  # never held
    assert len([m for m in w.pushes_to(pat["fcm"])
                if m["message"]["data"]["kind"] == "queue.called"]) == 1


def test_quiet_hours_do_not_hold_a_reminder(world: World) -> None:
    """A reminder falls due inside the patient's quiet hours and goes at once; the booking's
    confirmation, made in the same quiet hours, waits for their end."""
    w = world
    quiet, until = quiet_now()
    pat = w.patient(channels={"appointment.booked": ["email"], "appointment.reminder": ["email"]},
                    quiet_hours=quiet, timezone="UTC")
    r = w.as_(w.sa, "PATCH", f"/clinics/{w.clinic['id']}",
              json={"settings": {"reminder_offsets_seconds": [60]}})  # the setting's floor
    assert r.status_code == 200, r.text
    start = (datetime.now(UTC) + timedelta(seconds=75)).replace(microsecond=0)
    r = w.as_(w.sa, "POST", "/appointments", json={
        "clinic_id": w.clinic["id"], "doctor_id": w.doctor["user_id"],
        "patient_id": pat["user_id"], "type": "in_person", "start": start.isoformat(),
        "duration_minutes": 5, "location_id": w.clinic["location"],
        "override_reason": "reminder within the minute"})
    assert r.status_code == 201, r.text
    (reminder,) = eventually(lambda: [m for m in w.messages(pat["user_id"], "appointment.reminder")
                                      if m["status"] == "sent"], timeout=90)
    due = start - timedelta(seconds=60)
    assert reminder["next_at"] < due + timedelta(seconds=5), (reminder["next_at"], due)
    assert reminder["sent_at"] < due + timedelta(seconds=5), (reminder["sent_at"], due)
    assert len(w.mails_to(pat["email"])) == 1  # the reminder alone reached the provider
    (held,) = w.messages(pat["user_id"], "appointment.booked")
    assert (held["status"], held["next_at"]) == ("queued", until)


def check_in(w: World, appointment: str) -> str:
    r = w.as_(w.desk["token"], "POST", f"/appointments/{appointment}/check-in")
    assert r.status_code == 200, r.text
    r = w.as_(w.desk["token"], "GET", f"/appointments/{appointment}/queue-position")
    assert r.status_code == 200, r.text
    return str(r.json()["queue_id"])


# --- no usable channel --------------------------------------------------------------------

def test_a_recipient_with_no_usable_channel_is_no_channel_once(world: World) -> None:
    w = world
    pat = w.patient(device=False, channels={"appointment.booked": ["sms"]})  # and no phone
    w.book(pat)
    eventually(lambda: w.notifications(pat["user_id"], "appointment.booked") and w.caught_up())
    (notice,) = w.notifications(pat["user_id"], "appointment.booked")
    assert (notice["status"], notice["channels"], notice["in_app"]) == ("no_channel", [], False)
    assert w.messages(pat["user_id"]) == []  # nothing enqueued, so nothing to retry
    # the consumer moved past it: a later event is handled, the no_channel one is not again
    other = w.patient(channels={"appointment.booked": ["in_app"]})
    w.book(other)
    eventually(lambda: w.notifications(other["user_id"], "appointment.booked") and w.caught_up())
    assert w.notifications(pat["user_id"]) == [notice]
    assert w.messages(pat["user_id"]) == []


# --- canaries -----------------------------------------------------------------------------

def test_no_name_or_reason_reaches_an_event_or_a_log_line(world: World) -> None:
    """A patient whose names and visit reasons are canary strings is booked, rescheduled,
    cancelled and called (every notification path); the names and reasons reach the patient's
    own messages (rendered at send time) and nowhere else: no event row, no line the server or
    the worker logged (at DEBUG)."""
    w = world
    tag = uuid.uuid4().hex[:10]
    first, last = f"Zqfirst{tag}", f"Zqlast{tag}"
    reasons = [f"zqreason-{tag}-{what}" for what in ("visit", "move", "cancel", "queue")]
    pat = w.patient(name=f"{first} {last}", phone="+919800011122")
    # each step once the last one's notices are out (a booking cancelled before the consumer
    # reads it is never confirmed: the consumer looks at the appointment as it now stands)
    appointment = w.book(pat, reason=reasons[0])
    assert w.settled(pat["user_id"], "appointment.booked")
    r = w.as_(pat["token"], "POST", f"/appointments/{appointment}/reschedule",
              json={"start": next_slot(), "reason": reasons[1]})
    assert r.status_code == 200, r.text
    assert w.settled(pat["user_id"], "appointment.rescheduled")
    r = w.as_(pat["token"], "POST", f"/appointments/{appointment}/cancel",
              json={"reason": reasons[2]})
    assert r.status_code == 200, r.text
    assert w.settled(pat["user_id"], "appointment.cancelled")
    queued = w.book(pat, reason=reasons[3])
    queue_id = check_in(w, queued)
    r = w.as_(w.desk["token"], "POST", f"/queues/{queue_id}/call-next")
    assert r.status_code == 200 and r.json()["appointment_id"] == queued, r.text
    assert w.settled(pat["user_id"], "queue.called")
    assert {n["kind"] for n in w.notifications(pat["user_id"])} >= {
        "appointment.booked", "appointment.rescheduled", "appointment.cancelled", "queue.called"}
    # the canary did travel: the confirmation greets the patient by name
    assert any(first in str(m["body"]) for m in w.mails_to(pat["email"]))

    canaries = [first, last, *reasons]
    events = w.stack.db.fetch("SELECT type, data::text AS data FROM events")
    assert len(events) > 10  # the whole story is in the log, told by ids
    for e in events:
        for canary in canaries:
            assert canary not in e["data"], (e["type"], canary)
    logs = {"server": w.server.log.read_text(), "worker": w.worker_log.read_text()}
    assert logs["worker"] and logs["server"]
    for name, text in logs.items():
        for canary in canaries:
            assert canary not in text, (name, canary)

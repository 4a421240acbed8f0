"""A resume cursor beyond the clinic's last sequence cannot silence a socket: it is answered with
`resync_required` and the real head, and live events keep flowing from there."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.realtime_client import Recorder

FAR = 10**12


def rest(api: Any, *args: Any, **kw: Any) -> Any:
    return asyncio.to_thread(api.as_, *args, **kw)


def test_resume_beyond_the_head_is_refused_and_live_events_continue(server, api, clinic_factory,
                                                                     member_factory):
    clinic = clinic_factory()
    admin = member_factory(clinic["id"], "CLINIC_ADMIN", tag="far-cursor")
    token = admin["token"]

    async def head() -> int:
        r = await rest(api, token, "GET", f"/clinics/{clinic['id']}/events",
                       params={"after": 0, "limit": 1})
        return int(r.json()["last_seq"])

    async def live_event(rec: Recorder, expected_seq: int) -> None:
        r = await rest(api, token, "PATCH", f"/clinics/{clinic['id']}", json={"name": "live"})
        assert r.status_code == 200, r.text
        await rec.wait_for(lambda: bool(rec.named("clinic.updated")))
        assert [d["seq"] for d in rec.named("clinic.updated")] == [expected_seq]

    async def scenario() -> None:
        # The `resume` message.
        rec = Recorder(server.base_url)
        await rec.connect(token)
        last = await head()
        ack = await rec.call("resume", {"clinic_id": clinic["id"], "after_seq": FAR})
        assert ack == {"ok": True, "data": {"clinic_id": clinic["id"], "replayed": 0,
                                            "last_seq": last, "resync_required": True}}
        await rec.wait_for(lambda: bool(rec.named("resync_required")))
        assert rec.named("resync_required")[0]["clinic_id"] == clinic["id"]
        assert rec.named("resync_required")[0]["last_seq"] == last
        await live_event(rec, last + 1)
        await rec.close()

        # The connect-time `auth.resume` map.
        late = Recorder(server.base_url)
        last = await head()
        await late.connect(token, resume={clinic["id"]: FAR})
        await late.wait_for(lambda: bool(late.named("resync_required")))
        assert late.named("resync_required")[0]["last_seq"] == last
        await live_event(late, last + 1)
        await late.close()

    asyncio.run(scenario())


def test_the_event_log_over_rest_refuses_a_cursor_beyond_the_head(api, clinic_factory,
                                                                  member_factory):
    """The same rule for an integrator reading the log: no silent empty page."""
    clinic = clinic_factory()
    admin = member_factory(clinic["id"], "CLINIC_ADMIN", tag="far-rest")
    head = api.as_(admin["token"], "GET", f"/clinics/{clinic['id']}/events").json()["last_seq"]
    at_head = api.as_(admin["token"], "GET", f"/clinics/{clinic['id']}/events",
                      params={"after": head}).json()
    assert at_head == {"items": [], "last_seq": head, "resync_required": False}
    far = api.as_(admin["token"], "GET", f"/clinics/{clinic['id']}/events",
                  params={"after": FAR})
    assert far.status_code == 200, far.text
    assert far.json() == {"items": [], "last_seq": head, "resync_required": True}

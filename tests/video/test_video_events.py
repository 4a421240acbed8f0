"""The waiting room live: `video.patient_waiting`, `video.admitted` and `video.session_ended` reach
the doctor's, reception's and the patient's own sockets (real Socket.IO clients on the video
server), and never another patient's."""

from __future__ import annotations

import asyncio
from typing import Any

from tests import servers
from tests.realtime_client import Recorder
from tests.video.world import Clinic

FLOW = ("video.session_created", "video.patient_waiting", "video.admitted", "video.session_ended")


def of_session(r: Recorder, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e, d["data"]) for e, d in r.events
            if e.startswith("video.") and d["data"]["session_id"] == session_id]


def ended(r: Recorder, session_id: str) -> bool:
    return any(e == "video.session_ended" for e, _ in of_session(r, session_id))


def test_waiting_room_events_reach_the_doctor_reception_and_the_patient_only(
        world: Clinic, video_server: servers.Server) -> None:
    a = world.book()

    async def flow() -> tuple[dict[str, Recorder], str]:
        sockets = {who: Recorder(video_server.base_url)
                   for who in ("doctor", "desk", "patient", "other_patient")}
        try:
            for who, r in sockets.items():
                await r.connect(world.token(who))
            s = (await asyncio.to_thread(world.session, a["id"]))["id"]
            assert (await asyncio.to_thread(world.join, s, "patient")).status_code == 200
            assert (await asyncio.to_thread(world.act, s, "admit")).status_code == 200
            assert (await asyncio.to_thread(world.act, s, "end")).status_code == 200
            for who in ("doctor", "desk", "patient"):
                await sockets[who].wait_for(lambda who=who: ended(sockets[who], s), timeout=20)
        finally:
            for r in sockets.values():
                await r.close()
        return sockets, s

    sockets, s = asyncio.run(flow())
    for who in ("doctor", "desk", "patient"):
        seen = of_session(sockets[who], s)
        assert [e for e, _ in seen] == list(FLOW), who
        statuses = [d["status"] for _, d in seen]
        assert statuses == ["open", "waiting", "live", "ended"], who
        assert all(d["appointment_id"] == a["id"] for _, d in seen)
        assert seen[-1][1]["duration_seconds"] is not None
        assert all(set(d) >= {"session_id", "appointment_id", "provider", "status"}
                   and "room" not in d and "token" not in d for _, d in seen)
    assert of_session(sockets["other_patient"], s) == []

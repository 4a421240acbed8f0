"""A membership change in one clinic touches only that clinic's rooms on a user's sockets: his
other clinics keep streaming, the changed clinic is re-scoped to the new role (or left on
removal), and only logout or a disabled account closes the socket."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.realtime_client import Recorder


def rest(api: Any, *args: Any, **kw: Any) -> Any:
    return asyncio.to_thread(api.as_, *args, **kw)


def updates_of(rec: Recorder, clinic_id: str) -> list[Any]:
    return [d for d in rec.named("clinic.updated") if d["clinic_id"] == clinic_id]


def test_a_change_in_clinic_b_rescopes_only_b(server, api, sa_token, clinic_factory,
                                              member_factory):
    a, b = clinic_factory(), clinic_factory()
    admin_a = member_factory(a["id"], "CLINIC_ADMIN", tag="scope-admin-a")
    admin_b = member_factory(b["id"], "CLINIC_ADMIN", tag="scope-admin-b")
    doctor = member_factory(a["id"], "DOCTOR", tag="two-clinics")
    linked = api.as_(sa_token, "POST", f"/clinics/{b['id']}/members",
                     json={"email": doctor["email"], "name": "x", "role": "NURSE"})
    assert linked.status_code == 201, linked.text

    async def scenario() -> None:
        doc, watch_a, watch_b = (Recorder(server.base_url) for _ in range(3))
        await doc.connect(doctor["token"])
        await watch_a.connect(admin_a["token"])
        await watch_b.connect(admin_b["token"])

        async def touch(clinic: dict[str, Any], admin: dict[str, Any], watcher: Recorder) -> int:
            """A staff-room event in the clinic, and wait until the hub has delivered it."""
            before = len(updates_of(watcher, clinic["id"]))
            r = await rest(api, admin["token"], "PATCH", f"/clinics/{clinic['id']}",
                           json={"name": clinic["name"]})
            assert r.status_code == 200, r.text
            await watcher.wait_for(lambda: len(updates_of(watcher, clinic["id"])) > before)
            return int(updates_of(watcher, clinic["id"])[-1]["seq"])

        async def change(method: str, **kw: Any) -> None:
            r = await rest(api, admin_b["token"], method,
                           f"/clinics/{b['id']}/members/{doctor['user_id']}", **kw)
            assert r.status_code in (200, 204), r.text
            kind = "member.updated" if method == "PATCH" else "member.removed"
            await watch_b.wait_for(lambda: any(
                d["data"]["user_id"] == doctor["user_id"] for d in watch_b.named(kind)))

        async def hears(clinic: dict[str, Any], admin: dict[str, Any], watcher: Recorder) -> None:
            seq = await touch(clinic, admin, watcher)
            await doc.wait_for(lambda: seq in [d["seq"] for d in updates_of(doc, clinic["id"])])

        async def deaf_to_b() -> None:
            seq = await touch(b, admin_b, watch_b)
            # The hub delivers in order; once A's later event reached him, B's never will.
            await hears(a, admin_a, watch_a)
            assert seq not in [d["seq"] for d in updates_of(doc, b["id"])]

        await hears(b, admin_b, watch_b)  # a NURSE of B is staff there

        # B makes him a PATIENT: the socket stays, A keeps streaming, B's staff room is gone.
        await change("PATCH", json={"role": "PATIENT"})
        await deaf_to_b()
        assert doc.named("session.revoked") == [] and doc.sio.connected

        # B makes him staff again: B's staff events are his once more, on the same socket.
        await change("PATCH", json={"role": "RECEPTIONIST"})
        await hears(b, admin_b, watch_b)
        await hears(a, admin_a, watch_a)

        # Removal from B leaves B's rooms only.
        await change("DELETE")
        await deaf_to_b()
        assert doc.named("session.revoked") == [] and doc.sio.connected
        assert not doc.disconnected.is_set()

        # Logout still closes everything.
        r = await rest(api, doctor["token"], "POST", "/auth/logout")
        assert r.status_code == 204, r.text
        await asyncio.wait_for(doc.disconnected.wait(), 10)
        assert doc.named("session.revoked") == [{"reason": "logout"}]
        for rec in (watch_a, watch_b):
            await rec.close()

    asyncio.run(scenario())

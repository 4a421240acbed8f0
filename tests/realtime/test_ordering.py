"""realtime/ordering.py without sockets: a durable log in memory, an outlet that records what
each socket is handed, and the hub's steps (connect, subscribe, resume, live events from the
relay, lost and repeated pub/sub messages) driven one by one. Every socket must see each
clinic's events gapless, without duplicates, and held events released in order after a replay.
"""

from __future__ import annotations

import ast
import asyncio
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from domain.events.envelope import Category, Envelope, Outgoing, Priority
from domain.events.queries import EventPage
from realtime import ordering
from realtime.ordering import Ordering, Sequenced

CLINIC = uuid.UUID(int=1)
OTHER = uuid.UUID(int=2)
STAFF = f"clinic:{CLINIC}:staff"
DOCTORS = f"clinic:{CLINIC}:doctors"
OTHER_STAFF = f"clinic:{OTHER}:staff"


class MemoryLog:
    """The durable log's reads (domain/events/queries.py), over lists. `gate`, when set, holds
    every replay page (read at once) until it opens, so live events can arrive mid-replay."""

    def __init__(self) -> None:
        self.events: dict[uuid.UUID, list[Outgoing]] = {}
        self.first_retained: dict[uuid.UUID, int] = {}
        self.gate: asyncio.Event | None = None
        self.page_reads = 0
        self.page_read = asyncio.Event()

    def commit(self, clinic: uuid.UUID, audience: list[str],
               type_: str = "clinic.updated") -> Outgoing:
        log = self.events.setdefault(clinic, [])
        out = Outgoing(envelope=Envelope(
            id=uuid.uuid4(), seq=len(log) + 1, clinic_id=clinic, type=type_,
            category=Category.CLINIC, priority=Priority.NORMAL, occurred_at=datetime.now(UTC),
            data={}), audience=audience)
        log.append(out)
        return out

    def head(self, clinic: uuid.UUID) -> int:
        return len(self.events.get(clinic, []))

    async def events_after(self, clinic_id: uuid.UUID, after: int, rooms: list[str], *,
                           limit: int = 500) -> EventPage:
        self.page_reads += 1
        page = self._page(clinic_id, after, rooms, limit)
        self.page_read.set()
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(0)
        return page

    def _page(self, clinic_id: uuid.UUID, after: int, rooms: list[str], limit: int) -> EventPage:
        last = self.head(clinic_id)
        if after > last:
            return EventPage(items=[], last_seq=last, resync_required=True)
        if after == last:
            return EventPage(items=[], last_seq=last)
        if after + 1 < self.first_retained.get(clinic_id, 1):
            return EventPage(items=[], last_seq=last, resync_required=True)
        items = [o.envelope for o in self.events[clinic_id][after:]
                 if set(o.audience) & set(rooms)
                 and o.envelope.seq >= self.first_retained.get(clinic_id, 1)][:limit]
        return EventPage(items=items, last_seq=last)

    async def outgoing_after(self, clinic_id: uuid.UUID, after: int, *,
                             limit: int) -> list[Outgoing]:
        await asyncio.sleep(0)
        return self.events.get(clinic_id, [])[after:after + limit]

    async def last_seqs(self, clinic_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        await asyncio.sleep(0)
        return {c: self.head(c) for c in clinic_ids}


class Recorder:
    """The Outlet: rooms by socket, and what each socket was handed, in order."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[str]] = {}
        self.got: dict[str, list[tuple[uuid.UUID, int]]] = {}
        self.resyncs: dict[str, list[dict[str, Any]]] = {}
        self.broadcasts: list[tuple[uuid.UUID, int, list[str]]] = []

    def participants(self, audience: list[str]) -> Iterator[tuple[str, Any]]:
        if not audience:
            raise IndexError("no rooms")  # as python-socketio's get_participants does
        for sid in sorted(self.rooms):
            if self.rooms[sid] & set(audience):
                yield sid, f"eio-{sid}"

    async def emit(self, sid: str, event: str, data: Any) -> None:
        if event == "resync_required":
            self.resyncs.setdefault(sid, []).append(data)
        else:
            self.got.setdefault(sid, []).append((data.clinic_id, data.seq))

    async def broadcast(self, out: Outgoing, admitted: list[tuple[str, Any]]) -> None:
        env = out.envelope
        self.broadcasts.append((env.clinic_id, env.seq, [sid for sid, _ in admitted]))
        for sid, handle in admitted:
            assert handle == f"eio-{sid}"  # the transport handle travels with the sid
            self.got.setdefault(sid, []).append((env.clinic_id, env.seq))

    def seqs(self, sid: str, clinic: uuid.UUID = CLINIC) -> list[int]:
        return [seq for c, seq in self.got.get(sid, []) if c == clinic]


class World:
    """The hub's steps around one Ordering."""

    def __init__(self) -> None:
        self.log = MemoryLog()
        self.wire = Recorder()
        self.sockets: dict[str, Sequenced] = {}
        self.order = Ordering(self.sockets, self.log, self.wire)

    async def connect(self, sid: str, rooms: set[str],
                      resume: dict[uuid.UUID, int] | None = None) -> list[asyncio.Task[Any]]:
        """As Hub._on_connect: hold every clinic, join, read the heads, then replay the
        resumed clinics and release the others (as tasks, like the hub's spawns)."""
        clinics = sorted({uuid.UUID(r.split(":")[1]) for r in rooms})
        sock = Sequenced()
        self.order.hold(sock, clinics)
        self.sockets[sid] = sock
        self.wire.rooms[sid] = set(rooms)
        await self.order.start_at_heads(sock, clinics)
        tasks = []
        for clinic, after in (resume or {}).items():
            self.order.hold(sock, (clinic,))
            tasks.append(asyncio.ensure_future(self.order.replay(sid, clinic, after, sorted(rooms))))
        for clinic in clinics:
            if clinic not in (resume or {}):
                tasks.append(asyncio.ensure_future(self.order.release(sid, clinic)))
        return tasks

    async def publish(self, out: Outgoing) -> None:
        await self.order.deliver(out)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_live_events_reach_each_socket_in_the_audience_once_in_order():
    async def scenario() -> None:
        w = World()
        await asyncio.gather(*await w.connect("a", {STAFF}))
        await asyncio.gather(*await w.connect("b", {STAFF, DOCTORS}))
        await asyncio.gather(*await w.connect("c", {OTHER_STAFF}))
        for _ in range(3):
            await w.publish(w.log.commit(CLINIC, [STAFF, DOCTORS]))
        await w.publish(w.log.events[CLINIC][1])  # a relay retry of seq 2
        await w.publish(w.log.commit(CLINIC, [f"clinic:{CLINIC}:admins"]))  # nobody's room
        assert w.wire.seqs("a") == [1, 2, 3]
        assert w.wire.seqs("b") == [1, 2, 3]  # in two matching rooms: still once
        assert w.wire.got.get("c", []) == []  # another clinic's room only
        assert [b[1] for b in w.wire.broadcasts] == [1, 2, 3, 4]  # the retry never re-entered
        assert w.order.clinic_cursors[CLINIC] == 4

    run(scenario())


def test_an_event_with_no_audience_is_skipped_without_asking_for_participants():
    async def scenario() -> None:
        w = World()
        await asyncio.gather(*await w.connect("a", {STAFF}))
        await w.publish(w.log.commit(CLINIC, []))
        await w.publish(w.log.commit(CLINIC, [STAFF]))
        assert w.wire.seqs("a") == [2]
        assert [(b[1], b[2]) for b in w.wire.broadcasts] == [(1, []), (2, ["a"])]

    run(scenario())


def test_a_gap_in_pubsub_is_filled_from_the_log_through_the_same_path_in_order():
    async def scenario() -> None:
        w = World()
        await asyncio.gather(*await w.connect("a", {STAFF}))
        await w.publish(w.log.commit(CLINIC, [STAFF]))
        lost = [w.log.commit(CLINIC, [STAFF]) for _ in range(3)]  # pub/sub never brings these
        await w.publish(w.log.commit(CLINIC, [STAFF]))
        assert w.wire.seqs("a") == [1, 2, 3, 4, 5]
        # each missed event went through broadcast (the hub re-scopes there), in order, once
        assert [b[1] for b in w.wire.broadcasts] == [1, 2, 3, 4, 5]
        # the late originals of the lost messages change nothing
        for out in lost:
            await w.publish(out)
        assert w.wire.seqs("a") == [1, 2, 3, 4, 5]
        assert len(w.wire.broadcasts) == 5
        assert w.order.clinic_cursors[CLINIC] == 5

    run(scenario())


def test_catch_up_pages_through_a_long_gap():
    async def scenario() -> None:
        w = World()
        await asyncio.gather(*await w.connect("a", {STAFF}))
        await w.publish(w.log.commit(CLINIC, [STAFF]))
        for _ in range(ordering.REPLAY_PAGE * 2 + 7):
            w.log.commit(CLINIC, [STAFF])
        await w.publish(w.log.commit(CLINIC, [STAFF]))
        head = w.log.head(CLINIC)
        assert w.wire.seqs("a") == list(range(1, head + 1))
        # the reconnect path: everything after the process's cursor, no upper bound
        w.log.commit(CLINIC, [STAFF])
        await w.order.catch_up(CLINIC, w.order.clinic_cursors[CLINIC])
        assert w.wire.seqs("a") == list(range(1, head + 2))

    run(scenario())


def test_live_events_during_connect_wait_until_the_cursor_is_known():
    async def scenario() -> None:
        w = World()
        for _ in range(4):
            w.log.commit(CLINIC, [STAFF])
        sock = Sequenced()
        w.order.hold(sock, [CLINIC])
        w.sockets["a"] = sock
        w.wire.rooms["a"] = {STAFF}
        await w.order.start_at_heads(sock, [CLINIC])  # head 4: nothing before it is sent
        await w.publish(w.log.commit(CLINIC, [STAFF]))
        await w.publish(w.log.commit(CLINIC, [STAFF]))
        assert w.wire.seqs("a") == []
        assert [o.envelope.seq for o in sock.pending] == [5, 6]
        await w.order.release("a", CLINIC)
        assert w.wire.seqs("a") == [5, 6]
        assert sock.pending == [] and sock.replaying == set()
        await w.publish(w.log.commit(CLINIC, [STAFF]))
        assert w.wire.seqs("a") == [5, 6, 7]

    run(scenario())


def test_resume_replays_what_was_missed_then_releases_held_events_in_order():
    async def scenario() -> None:
        w = World()
        for _ in range(5):
            w.log.commit(CLINIC, [STAFF])
        w.log.commit(CLINIC, [DOCTORS])  # 6: not for this socket
        w.log.gate = asyncio.Event()
        tasks = await w.connect("a", {STAFF}, resume={CLINIC: 2})
        await w.log.page_read.wait()  # the replay has read its page (3..6) and waits
        for _ in range(3):
            await w.publish(w.log.commit(CLINIC, [STAFF]))  # 7, 8, 9: held
        await w.publish(w.log.events[CLINIC][6])  # a relay retry of 7
        assert w.wire.seqs("a") == []
        assert [o.envelope.seq for o in w.sockets["a"].pending] == [7, 8, 9]
        w.sockets["a"].pending.reverse()  # release sorts what it holds
        w.log.gate.set()
        (result,) = await asyncio.gather(*tasks)
        assert result == {"clinic_id": str(CLINIC), "replayed": 3, "last_seq": 6,
                          "resync_required": False}
        assert w.wire.seqs("a") == [3, 4, 5, 7, 8, 9]
        await w.publish(w.log.commit(CLINIC, [STAFF]))
        assert w.wire.seqs("a") == [3, 4, 5, 7, 8, 9, 10]

    run(scenario())


def test_replay_pages_through_a_long_log_gapless():
    async def scenario() -> None:
        w = World()
        total = ordering.REPLAY_PAGE * 2 + 3
        for _ in range(total):
            w.log.commit(CLINIC, [STAFF])
        (result,) = await asyncio.gather(*await w.connect("a", {STAFF}, resume={CLINIC: 0}))
        assert result["replayed"] == total and result["last_seq"] == total
        assert w.wire.seqs("a") == list(range(1, total + 1))
        assert w.log.page_reads == 3

    run(scenario())


def test_a_cursor_past_the_head_or_older_than_the_log_gets_resync_required():
    async def scenario() -> None:
        w = World()
        for _ in range(3):
            w.log.commit(CLINIC, [STAFF])
        (ahead,) = await asyncio.gather(*await w.connect("a", {STAFF}, resume={CLINIC: 99}))
        assert ahead["resync_required"] is True and ahead["last_seq"] == 3
        assert [(r["clinic_id"], r["last_seq"], r["reason"]) for r in w.wire.resyncs["a"]] == [
            (str(CLINIC), 3, "cursor beyond the clinic's last sequence")]
        w.log.first_retained[CLINIC] = 3
        (old,) = await asyncio.gather(*await w.connect("b", {STAFF}, resume={CLINIC: 1}))
        assert old["resync_required"] is True and old["replayed"] == 0
        assert w.wire.resyncs["b"][0]["reason"] == "gap older than the retained log"
        # both now follow the live sequence from the real head
        await w.publish(w.log.commit(CLINIC, [STAFF]))
        assert w.wire.seqs("a") == [4] and w.wire.seqs("b") == [4]

    run(scenario())


def test_subscribing_to_a_new_clinic_starts_at_its_head():
    async def scenario() -> None:
        w = World()
        await asyncio.gather(*await w.connect("a", {STAFF}))
        w.log.commit(OTHER, [OTHER_STAFF])
        sock = w.sockets["a"]
        assert w.order.is_new(sock, OTHER) and not w.order.is_new(sock, CLINIC)
        assert not w.order.is_new(sock, None)
        w.order.hold(sock, (OTHER,))
        w.wire.rooms["a"].add(OTHER_STAFF)
        await w.publish(w.log.commit(OTHER, [OTHER_STAFF]))  # arrives while held
        await w.order.start_at_heads(sock, [OTHER])
        await w.order.release("a", OTHER)
        await w.publish(w.log.commit(OTHER, [OTHER_STAFF]))
        assert w.wire.seqs("a", OTHER) == [3]  # 2 was at or before the head it started at

    run(scenario())


def test_a_socket_gone_mid_replay_is_simply_dropped():
    async def scenario() -> None:
        w = World()
        w.log.commit(CLINIC, [STAFF])
        w.log.gate = asyncio.Event()
        tasks = await w.connect("a", {STAFF}, resume={CLINIC: 0})
        del w.sockets["a"]
        w.log.gate.set()
        assert await asyncio.gather(*tasks) == [{}]
        await w.publish(w.log.commit(CLINIC, [STAFF]))
        assert w.wire.seqs("a") == []

    run(scenario())


def test_random_interleavings_stay_gapless_and_without_duplicates():
    """Sockets connecting (some resuming from an old cursor), live events lost, repeated or
    arriving mid-replay, over two clinics: each socket sees, per clinic, every event of its
    rooms from where it started to the head, once, in sequence order."""

    async def scenario(seed: int) -> None:
        rnd = random.Random(seed)
        w = World()
        rooms_of = {CLINIC: STAFF, OTHER: OTHER_STAFF}
        started: dict[str, dict[uuid.UUID, int]] = {}
        tasks: list[asyncio.Task[Any]] = []
        published: list[Outgoing] = []
        for step in range(120):
            roll = rnd.random()
            if roll < 0.12 and len(started) < 6:
                sid = f"s{step}"
                clinics = rnd.sample(sorted(rooms_of), rnd.randint(1, 2))
                resume = {c: rnd.randint(0, w.log.head(c)) for c in clinics if rnd.random() < .6}
                started[sid] = {c: resume.get(c, w.log.head(c)) for c in clinics}
                tasks += await w.connect(sid, {rooms_of[c] for c in clinics}, resume)
            elif roll < 0.85:
                clinic = rnd.choice(sorted(rooms_of))
                out = w.log.commit(clinic, [rooms_of[clinic]])
                if rnd.random() > 0.2:  # else pub/sub lost it
                    await w.publish(out)
                    published.append(out)
            elif published:
                await w.publish(rnd.choice(published))  # a relay retry, possibly late
            for _ in range(rnd.randint(0, 3)):
                await asyncio.sleep(0)  # let replays and releases run partway
        await asyncio.gather(*tasks)
        for clinic in rooms_of:  # the last events may have been lost: the next one fills in
            await w.publish(w.log.commit(clinic, [rooms_of[clinic]]))
        for sid, starts in started.items():
            for clinic, start in starts.items():
                assert w.wire.seqs(sid, clinic) == list(range(start + 1, w.log.head(clinic) + 1)), (
                    seed, sid, clinic)
            assert all(c in starts for c, _ in w.wire.got.get(sid, []))

    for seed in range(60):
        run(scenario(seed))


def test_the_ordering_module_knows_no_transport_or_database():
    tree = ast.parse(Path(ordering.__file__).read_text())
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not {m for m in imported if m.split(".")[0] in (
        "socketio", "engineio", "uvicorn", "websockets", "asyncpg", "redis")
        or m in ("domain.db", "domain.kv")}

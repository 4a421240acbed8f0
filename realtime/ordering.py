"""Per-socket ordering of each clinic's events: what a socket is handed, and when.

Every event carries its clinic's gapless sequence number. A socket keeps a cursor per clinic
(the last sequence it was sent, or chose not to see), so relay retries and resume overlaps
never reach a client twice. While a clinic is *held* for a socket (its cursor is being read at
connect or subscribe, or a replay from the durable log is running) that clinic's live events
wait in the socket's `pending` list; releasing the clinic sends those past the cursor, in
sequence order. The process keeps a cursor per clinic too (`clinic_cursors`): an event past
`cursor + 1` means pub/sub lost some, and the gap is filled from the log first, each missed
event going through the same per-recipient path as a live one.

This module knows nothing of Socket.IO or the database: the hub hands it the durable log
(`Log`, domain/events/queries.py in production) and an `Outlet` (who is in which room, how one
socket or many are sent a frame), so tests/realtime/ drives it with plain objects.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from domain.events.envelope import Envelope, Outgoing
from domain.events.queries import EventPage

#: Events read from the log per query (replay and catch-up).
REPLAY_PAGE = 500


class Log(Protocol):
    """The durable event log, as domain/events/queries.py reads it."""

    async def events_after(self, clinic_id: uuid.UUID, after: int, rooms: list[str], *,
                           limit: int = ...) -> EventPage: ...

    async def outgoing_after(self, clinic_id: uuid.UUID, after: int, *,
                             limit: int) -> list[Outgoing]: ...

    async def last_seqs(self, clinic_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]: ...


class Outlet(Protocol):
    """How ordered events leave: the hub over Socket.IO; a recorder in the unit tests."""

    def participants(self, audience: list[str]) -> Iterable[tuple[str, Any]]:
        """(sid, transport handle) of every socket in any of these rooms, each once."""
        ...

    async def emit(self, sid: str, event: str, data: Any) -> None:
        """One event to one socket, after everything sent to it before (replay, release)."""
        ...

    async def broadcast(self, out: Outgoing, admitted: list[tuple[str, Any]]) -> None:
        """A live event to the participants ordering admitted (maybe none). Called once per
        event, in sequence order, and awaited before the next one is handled."""
        ...


class Sequenced:
    """A socket's place in each clinic's sequence (the hub's Socket extends it)."""

    __slots__ = ("cursors", "pending", "replaying")

    def __init__(self) -> None:
        #: clinic -> last sequence sent to (or skipped by) this socket
        self.cursors: dict[uuid.UUID, int] = {}
        #: clinics whose live events are held back (cursor unknown, or a replay running)
        self.replaying: set[uuid.UUID] = set()
        #: the held live events, in arrival order
        self.pending: list[Outgoing] = []


class Ordering:
    """The process's ordering: `clinic_cursors`, and the rules that keep every socket's view
    of a clinic gapless and free of duplicates."""

    def __init__(self, sockets: Mapping[str, Sequenced], log: Log, outlet: Outlet) -> None:
        self.sockets = sockets
        self.log = log
        self.outlet = outlet
        #: clinic -> last sequence this process handled
        self.clinic_cursors: dict[uuid.UUID, int] = {}

    # a socket's cursors ------------------------------------------------------------------------

    @staticmethod
    def hold(sock: Sequenced, clinics: Iterable[uuid.UUID]) -> None:
        """Hold back these clinics' live events for the socket until `release`: one that
        arrived while its cursor is being read would otherwise go out, and the next be
        skipped."""
        sock.replaying.update(clinics)

    @staticmethod
    def is_new(sock: Sequenced, clinic: uuid.UUID | None) -> bool:
        """Whether the socket has neither a cursor nor a replay for the clinic yet."""
        return clinic is not None and clinic not in sock.cursors and clinic not in sock.replaying

    async def start_at_heads(self, sock: Sequenced, clinics: list[uuid.UUID]) -> None:
        """The socket starts at each clinic's current head (what it sees from now on)."""
        heads = await self.log.last_seqs(clinics)
        for clinic, head in heads.items():
            sock.cursors[clinic] = head
            self.clinic_cursors.setdefault(clinic, head)

    async def replay(self, sid: str, clinic: uuid.UUID, after: int,
                     rooms: list[str]) -> dict[str, Any]:
        """Send the socket what it missed after `after` (what `rooms` may see), in order, then
        release the clinic. The clinic must be held. A cursor older than the retained log or
        past the head gets `resync_required` with the real head instead."""
        replayed = 0
        resync = False
        cursor = after
        try:
            sock = self.sockets.get(sid)
            if sock is None:
                return {}
            while True:
                page = await self.log.events_after(clinic, cursor, rooms, limit=REPLAY_PAGE)
                # A cursor past the head would silence every live event until the clinic
                # caught up with it: the client is told the real head instead.
                if page.resync_required or cursor > page.last_seq:
                    resync = True
                    await self.outlet.emit(sid, "resync_required", {
                        "clinic_id": str(clinic),
                        "reason": "cursor beyond the clinic's last sequence"
                        if cursor > page.last_seq else "gap older than the retained log",
                        "last_seq": page.last_seq})
                    cursor = page.last_seq
                    break
                for env in page.items:
                    await self.outlet.emit(sid, env.type, env)
                replayed += len(page.items)
                if len(page.items) < REPLAY_PAGE:
                    cursor = max(page.last_seq, page.items[-1].seq if page.items else 0, cursor)
                    break
                cursor = page.items[-1].seq
            sock.cursors[clinic] = cursor
        finally:
            await self.release(sid, clinic)
        return {"clinic_id": str(clinic), "replayed": replayed, "last_seq": cursor,
                "resync_required": resync}

    async def release(self, sid: str, clinic: uuid.UUID) -> None:
        """Stop holding the clinic's live events for the socket; send those past its cursor,
        in sequence order."""
        sock = self.sockets.get(sid)
        if sock is None:
            return
        sock.replaying.discard(clinic)
        held = [o for o in sock.pending if o.envelope.clinic_id == clinic]
        sock.pending = [o for o in sock.pending if o.envelope.clinic_id != clinic]
        for out in sorted(held, key=lambda o: o.envelope.seq):
            env: Envelope = out.envelope
            if env.seq > sock.cursors.get(clinic, 0):
                sock.cursors[clinic] = env.seq
                await self.outlet.emit(sid, env.type, env)

    # live events -------------------------------------------------------------------------------

    async def deliver(self, out: Outgoing) -> None:
        """A committed event from the relay: dropped if this process handled it already,
        preceded by what pub/sub lost if it skips ahead."""
        clinic = out.envelope.clinic_id
        seq = out.envelope.seq
        seen = self.clinic_cursors.get(clinic)
        if seen is not None:
            if seq <= seen:
                return  # a relay retry: already delivered by this process
            if seq > seen + 1:
                await self.catch_up(clinic, seen, before=seq)
        self.clinic_cursors[clinic] = max(seq, self.clinic_cursors.get(clinic, 0))
        await self._dispatch(out)

    async def catch_up(self, clinic: uuid.UUID, after: int, before: int | None = None) -> None:
        """Fill a gap in what this process heard (after `after`, before `before`) from the
        durable log, each event through the per-recipient path, in order."""
        while True:
            batch = await self.log.outgoing_after(clinic, after, limit=REPLAY_PAGE)
            items = [o for o in batch if before is None or o.envelope.seq < before]
            for out in items:
                self.clinic_cursors[clinic] = max(out.envelope.seq,
                                                  self.clinic_cursors.get(clinic, 0))
                await self._dispatch(out)
            if len(batch) < REPLAY_PAGE or not items:
                return
            after = items[-1].envelope.seq

    async def _dispatch(self, out: Outgoing) -> None:
        """Who gets the event now: each socket in its audience whose cursor is behind it, or
        (its clinic held) later, from `pending`. Runs once per recipient per event: no await
        in the loop, locals only."""
        env = out.envelope
        clinic, seq, sockets = env.clinic_id, env.seq, self.sockets
        admitted: list[tuple[str, Any]] = []
        # python-socketio's get_participants raises IndexError on no rooms at all
        for participant in self.outlet.participants(out.audience) if out.audience else ():
            sock = sockets.get(participant[0])
            if sock is None:
                continue
            if sock.replaying and clinic in sock.replaying:
                sock.pending.append(out)
                continue
            cursors = sock.cursors
            if seq <= cursors.get(clinic, seq - 1):
                continue
            cursors[clinic] = seq
            admitted.append(participant)
        await self.outlet.broadcast(out, admitted)

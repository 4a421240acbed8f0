"""Audit rows and events wait in the transaction's journal and are appended just before
COMMIT (domain/journal.py): what a rollback, a rolled-back savepoint or a failed flush leaves
behind, and what happens outside any transaction. Runs the domain in a child process on the
session's database."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = """
import asyncio, json, sys, uuid
from domain import db
from domain.audit.commands import record
from domain.audit.queries import verify_chain
from domain.events.commands import record as record_event, record_many
from domain.events.envelope import Category, DomainEvent

class Probe(DomainEvent, frozen=True):
    TYPE = "test.probe"
    CATEGORY = Category.CLINIC
    n: int

clinic = uuid.UUID(sys.argv[1])
tag = sys.argv[2]

async def seq():
    rows = await db.fetch("SELECT last_seq FROM clinic_sequences WHERE clinic_id = $1", clinic)
    return rows[0]["last_seq"] if rows else 0

async def probes():
    rows = await db.fetch("SELECT seq, data FROM events WHERE clinic_id = $1 AND type = 'test.probe'"
                          " ORDER BY seq", clinic)
    return [[r["seq"], json.loads(r["data"])["n"]] for r in rows]

async def audits():
    rows = await db.fetch("SELECT action FROM audit_log WHERE resource_id = $1 ORDER BY id", tag)
    return [r["action"] for r in rows]

async def note(n):
    await record_event(None, clinic_id=clinic, event=Probe(n=n), audience=["staff"])
    await record(None, action=f"probe:{n}", resource_type="probe", resource_id=tag,
                 clinic_id=clinic)

async def main():
    out = {"seq0": await seq()}
    # a savepoint that rolls back forgets what it noted; the rest commits
    async with db.transaction() as tx:
        await note(1)
        try:
            async with tx.savepoint():
                await note(2)
                raise LookupError
        except LookupError:
            pass
        async with tx.savepoint():
            await note(3)
        out["inside"] = [await probes(), await audits()]  # nothing appended before COMMIT
    out["committed"] = [await probes(), await audits()]
    # an exception rolls everything back, journal included
    try:
        async with db.transaction():
            await note(4)
            raise KeyError
    except KeyError:
        pass
    # a flush that fails (no such clinic: foreign key) rolls the whole transaction back
    try:
        async with db.transaction():
            await record(None, action="probe:5", resource_type="probe", resource_id=tag)
            await record_event(None, clinic_id=uuid.uuid4(), event=Probe(n=5), audience=[])
    except Exception as exc:
        out["flush_error"] = type(exc).__name__
    # outside any transaction: an audit row is written at once, an event is refused
    await record(None, action="probe:6", resource_type="probe", resource_id=tag)
    try:
        await record_many(None, clinic_id=clinic, events=[(Probe(n=7), [])])
    except RuntimeError:
        out["event_outside"] = "refused"
    out["end"] = [await probes(), await audits(), await seq()]
    out["chain_ok"] = (await verify_chain()).ok
    print(json.dumps(out))

asyncio.run(main())
"""


def test_the_journal_follows_the_transaction(env, clinic_factory):
    clinic = clinic_factory()
    tag = f"journal-{clinic['id']}"
    done = subprocess.run([sys.executable, "-c", SCRIPT, clinic["id"], tag], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    s0 = out["seq0"]
    assert out["inside"] == [[], []]
    assert out["committed"] == [[[s0 + 1, 1], [s0 + 2, 3]], ["probe:1", "probe:3"]]
    assert out["flush_error"] == "ForeignKeyViolationError"
    assert out["event_outside"] == "refused"
    assert out["end"] == [[[s0 + 1, 1], [s0 + 2, 3]], ["probe:1", "probe:3", "probe:6"], s0 + 2]
    assert out["chain_ok"] is True

"""Reading and verifying the audit log."""

from __future__ import annotations

import json

import msgspec

from domain import db
from domain.audit.chain import GENESIS, row_hash


class VerifyResult(msgspec.Struct, frozen=True):
    ok: bool
    rows: int
    first_bad_id: int | None = None
    reason: str | None = None


async def verify_chain(batch: int = 5000) -> VerifyResult:
    """Recompute every hash in id order; the first mismatch names the tampered row."""
    prev = GENESIS
    after = 0
    count = 0
    while True:
        rows = await db.fetch(
            "SELECT * FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2", after, batch
        )
        if not rows:
            return VerifyResult(ok=True, rows=count)
        for r in rows:
            if bytes(r["prev_hash"]) != prev:
                return VerifyResult(
                    ok=False, rows=count, first_bad_id=r["id"], reason="chain broken before row"
                )
            expected = row_hash(
                prev,
                id=r["id"],
                occurred_at=r["occurred_at"],
                actor_id=r["actor_id"],
                clinic_id=r["clinic_id"],
                action=r["action"],
                resource_type=r["resource_type"],
                resource_id=r["resource_id"],
                outcome=r["outcome"],
                request_id=r["request_id"],
                ip=r["ip"],
                detail=json.loads(r["detail"]),
            )
            if expected != bytes(r["hash"]):
                return VerifyResult(
                    ok=False, rows=count, first_bad_id=r["id"], reason="row content changed"
                )
            prev = expected
            count += 1
            after = r["id"]

"""What pipeline tests share: a stack of their own (database and Redis: these tests start,
stop and kill workers), a clinic in it, and messages enqueued through the real command."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests import servers
from tests.conftest import Db

ROOT = servers.Path(__file__).resolve().parents[2]


class Stack:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.db = Db(env["DATABASE_URL"])

    def clinic(self) -> uuid.UUID:
        clinic_id = uuid.uuid4()
        self.db.fetch("INSERT INTO clinics (id, name, timezone) VALUES ($1, $2, 'Asia/Kolkata')",
                      clinic_id, f"Clinic {clinic_id.hex[:6]}")
        return clinic_id

    def configure(self, clinic_id: uuid.UUID, channel: str, providers: list[str], *,
                  rate_per_second: int | None = None, retry_unknown: bool = False,
                  sender: dict[str, str] | None = None) -> None:
        """The clinic's chain, as the config route stores it (tests of the pipeline alone)."""
        self.db.fetch(
            """INSERT INTO communication_configs (clinic_id, channel, providers, sender,
                                                  rate_per_second, retry_unknown)
               VALUES ($1, $2, $3, $4::jsonb, $5, $6)
               ON CONFLICT (clinic_id, channel) DO UPDATE SET providers = EXCLUDED.providers,
                   sender = EXCLUDED.sender, rate_per_second = EXCLUDED.rate_per_second,
                   retry_unknown = EXCLUDED.retry_unknown""",
            clinic_id, channel, providers, json.dumps(sender or {}), rate_per_second, retry_unknown)

    def enqueue(self, clinic_id: uuid.UUID, *, to: str, count: int = 1, channel: str = "email",
                env: dict[str, str] | None = None, kind: str = "test",
                unsubscribe: bool = False) -> list[uuid.UUID]:
        """`unsubscribe`: with the one-click unsubscribe headers of `kind` and `to`."""
        done = subprocess.run(
            [sys.executable, "-m", "tests.communication.enqueue", "--clinic", str(clinic_id),
             "--channel", channel, "--to", to, "--count", str(count), "--kind", kind,
             *(["--unsubscribe"] if unsubscribe else [])],
            env=env or self.env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        return [uuid.UUID(i) for i in json.loads(done.stdout)]

    def messages(self, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        return self.db.fetch("SELECT * FROM communication_messages WHERE id = ANY($1::uuid[])", ids)

    def attempts(self, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
        return self.db.fetch("SELECT * FROM communication_attempts WHERE message_id = ANY($1::uuid[]) "
                             "ORDER BY id", ids)

    def settled(self, ids: list[uuid.UUID]) -> list[dict[str, Any]] | None:
        """The messages once none is queued or sending any more (for `eventually`)."""
        rows = self.messages(ids)
        if len(rows) == len(ids) and all(r["status"] not in ("queued", "sending") for r in rows):
            return rows
        return None


@contextmanager
def pipeline_stack(base_env: dict[str, str], **settings: str) -> Iterator[Stack]:
    with servers.isolated_stack(base_env) as (env, _redis):
        env = {**env, "CAREWIRE_JOB_BACKOFF_SECONDS": "0.2", "CAREWIRE_SCHEDULER_POLL_SECONDS": "0.2",
               **{f"CAREWIRE_{k.upper()}": v for k, v in settings.items()}}
        yield Stack(env)

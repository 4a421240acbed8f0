"""Enqueue messages through the real `enqueue` command, in a process of its own (the test
process's domain layer belongs to the session database; pipeline tests use their own stack).

`python -m tests.communication.enqueue --clinic ID --channel email --to a@x.test --count 10`
prints the new message ids as a JSON list. Needs DATABASE_URL (and the usual CAREWIRE_*).
`--unsubscribe`: the email carries the real one-click unsubscribe headers of its kind and
address (as notifications will put them), not a placeholder."""

from __future__ import annotations

import argparse
import asyncio
import json
import uuid

from domain import db
from domain.communication import unsubscribe
from domain.communication.commands.messages import Content, enqueue


async def main(args: argparse.Namespace) -> list[str]:
    await db.engine().start_connection_pool(min_size=1, max_size=4)
    headers = {"List-Unsubscribe": "<https://x.test/u>"}
    if args.unsubscribe:
        headers = unsubscribe.headers(unsubscribe.link(clinic_id=uuid.UUID(args.clinic),
                                                       kind=args.kind, address=args.to))
    try:
        ids: list[str] = []
        for i in range(args.count):
            async with db.transaction():
                made = await enqueue(
                    clinic_id=uuid.UUID(args.clinic), channel=args.channel, kind=args.kind,
                    address=args.to, user_id=uuid.UUID(args.user) if args.user else None,
                    content=Content(subject=f"{args.subject} {i}", text=f"{args.text} {i}",
                                    headers=headers))
            ids.extend(str(m) for m in made)
        return ids
    finally:
        await db.engine().close_connection_pool()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--clinic", required=True)
    p.add_argument("--channel", default="email")
    p.add_argument("--to")
    p.add_argument("--user")
    p.add_argument("--kind", default="test")
    p.add_argument("--subject", default="Hello")
    p.add_argument("--text", default="Your appointment is confirmed")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--unsubscribe", action="store_true")
    print(json.dumps(asyncio.run(main(p.parse_args()))))

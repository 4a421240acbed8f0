"""The database engine and the one way to open a transaction."""

from __future__ import annotations

from typing import Any, cast

from piccolo.engine.finder import engine_finder
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction


def engine() -> PostgresEngine:
    found = engine_finder()
    if not isinstance(found, PostgresEngine):
        raise RuntimeError("carewire needs a PostgreSQL engine in piccolo_conf.DB")
    return found


def transaction() -> PostgresTransaction:
    """A transaction; nested calls join the outer one, so audit rows ride the same commit."""
    return engine().transaction()


async def fetch(sql: str, *args: Any) -> list[dict[str, Any]]:
    """Raw SQL with asyncpg `$n` placeholders, on the current transaction when there is one."""
    eng = engine()
    tx = eng.current_transaction.get()
    if tx is not None:
        rows = await tx.connection.fetch(sql, *args)
    elif eng.pool is not None:
        async with eng.pool.acquire() as conn:
            rows = await conn.fetch(sql, *args)
    else:
        conn = await eng.get_new_connection()
        try:
            rows = await conn.fetch(sql, *args)
        finally:
            await conn.close()
    return [dict(cast(Any, r)) for r in rows]

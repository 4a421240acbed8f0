"""The database engine and the one way to open a transaction."""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, cast

from piccolo.engine.finder import engine_finder
from piccolo.engine.postgres import PostgresEngine, PostgresTransaction

from domain.journal import Journal, flush

#: The journal of the outermost `transaction()` in progress, shared by the nested ones.
_journal: contextvars.ContextVar[Journal | None] = contextvars.ContextVar("carewire_journal",
                                                                          default=None)


def engine() -> PostgresEngine:
    found = engine_finder()
    if not isinstance(found, PostgresEngine):
        raise RuntimeError("carewire needs a PostgreSQL engine in piccolo_conf.DB")
    return found


class Transaction:
    """Piccolo's transaction (nested calls join the outer one, so audit rows ride the same
    commit), plus the journal of audit rows and events that the outermost one appends just
    before COMMIT: see `domain.journal` for why they wait until then."""

    __slots__ = ("_inner", "_journal", "_token", "_tx")

    def __init__(self) -> None:
        self._inner = engine().transaction()
        self._tx: PostgresTransaction | None = None
        self._journal: Journal | None = None
        self._token: contextvars.Token[Journal | None] | None = None

    async def __aenter__(self) -> Transaction:
        self._tx = await self._inner.__aenter__()
        if _journal.get() is None:  # outermost (or inside a bare Piccolo one, as migrations are)
            self._journal = Journal()
            self._token = _journal.set(self._journal)
        return self

    @property
    def connection(self) -> Any:
        """The asyncpg connection (untyped, as asyncpg is)."""
        assert self._tx is not None, "enter the transaction first"
        return self._tx.connection

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A savepoint whose rollback also forgets the audit rows and events noted inside it."""
        journal = _journal.get()
        assert journal is not None
        mark = journal.mark()
        try:
            async with self.connection.transaction():
                yield
        except BaseException:
            journal.rollback_to(mark)
            raise

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        journal = self._journal
        if journal is None:  # nested: the outer one commits and appends
            return await self._inner.__aexit__(exc_type, exc, tb)
        assert self._token is not None
        _journal.reset(self._token)
        if exc is None:
            try:
                await flush(self.connection, journal)
            except BaseException as failed:
                await self._inner.__aexit__(type(failed), failed, failed.__traceback__)
                raise
        return await self._inner.__aexit__(exc_type, exc, tb)


def transaction() -> Transaction:
    """A transaction; nested calls join the outer one, so audit rows ride the same commit."""
    return Transaction()


def journal() -> Journal | None:
    """Where audit rows and events of the current transaction wait for its end (None outside
    one)."""
    return _journal.get()


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

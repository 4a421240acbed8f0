"""The domain layer in process: commands called directly against the session's real database,
with no HTTP in between, and every SQL statement they send counted (as Zulip's
`assert_database_query_count`).

What counts is every statement asyncpg sends on the pool's connections while the command runs,
so the number is the command's round trips: its queries, BEGIN / SAVEPOINT / RELEASE / COMMIT /
ROLLBACK, and the pool's reset query when a connection goes back (a read outside a transaction
costs two: itself and the reset). Statement preparation and type introspection are not separate
entries; counts are taken on a warm connection (the shape of each command runs once first)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class DomainLayer:
    """One event loop for the session, holding domain.db's pool (a pool lives in one loop)."""

    def __init__(self, env: dict[str, str]) -> None:
        # the in-process settings (token keys, DSN) are the ones the server of this run has
        for key in ("DATABASE_URL", "REDIS_URL", "CAREWIRE_JWT_SECRET", "CAREWIRE_REDIS_PREFIX"):
            os.environ[key] = env[key]
        from domain import db, settings

        settings.get.cache_clear()
        self._runner = asyncio.Runner()
        self._statements: list[str] | None = None
        self._engine = db.engine()
        self._engine.config["dsn"] = env["DATABASE_URL"]
        self.run(self._engine.start_connection_pool(min_size=1, max_size=4, init=self._watch))

    async def _watch(self, conn: Any) -> None:
        """Each new pooled connection reports its statements (asyncpg's query logger)."""
        conn.add_query_logger(self._log)

    def _log(self, record: Any) -> None:
        if self._statements is not None:
            self._statements.append(" ".join(record.query.split()))

    def run(self, coro: Awaitable[T]) -> T:
        return self._runner.run(_wrap(coro))

    def principal(self, token: str) -> Any:
        """The principal of a real access token (as the gateway builds it for a request)."""
        from domain.identity.queries import principal_for_access_token
        from domain.principal import RequestMeta

        return self.run(principal_for_access_token(token, RequestMeta(request_id="in-process")))

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        """The statements sent inside the block (each `run` in it)."""
        seen: list[str] = []
        self._statements = seen
        try:
            yield seen
        finally:
            self._statements = None

    def count(self, coro: Awaitable[T]) -> tuple[T | BaseException, list[str]]:
        """Run one command; its result (or the domain error it raised) and its statements."""
        with self.counting() as seen:
            try:
                result: T | BaseException = self.run(coro)
            except Exception as exc:  # a refusal is a result here
                result = exc
        return result, seen

    def close(self) -> None:
        self.run(self._engine.close_connection_pool())
        self._runner.close()


async def _wrap(coro: Awaitable[T]) -> T:
    try:
        return await coro
    finally:
        # asyncpg hands logged queries to call_soon: one turn of the loop delivers those sent
        await asyncio.sleep(0)

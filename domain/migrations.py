"""Raw-SQL Piccolo migrations: constraints, partial indexes and triggers are written as SQL,
since Piccolo's auto-migrations cannot express them faithfully (see STACK-NOTES)."""

from __future__ import annotations

from piccolo.apps.migrations.auto.migration_manager import MigrationManager

from domain.db import engine


def sql_migration(*, migration_id: str, app_name: str, description: str, sql: str) -> MigrationManager:
    manager = MigrationManager(migration_id=migration_id, app_name=app_name, description=description)

    async def run() -> None:
        tx = engine().current_transaction.get()
        if tx is None:  # pragma: no cover - the manager always wraps migrations in a transaction
            raise RuntimeError("migration outside a transaction")
        await tx.connection.execute(sql)

    manager.add_raw(run)
    return manager

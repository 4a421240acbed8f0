"""Registers this context's migrations with Piccolo's runner. The raw SQL in
piccolo_migrations/ is the schema of record; no Table classes (README, "Layout")."""

from pathlib import Path

from piccolo.conf.apps import AppConfig

APP_CONFIG = AppConfig(
    app_name="video",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    migration_dependencies=["domain.scheduling.piccolo_app", "domain.inbox.piccolo_app"],
)

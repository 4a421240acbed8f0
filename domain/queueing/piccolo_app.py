from pathlib import Path

from piccolo.conf.apps import AppConfig

from domain.queueing.tables import Queue, QueueEntry

APP_CONFIG = AppConfig(
    app_name="queueing",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=[Queue, QueueEntry],
    migration_dependencies=["domain.scheduling.piccolo_app"],
)

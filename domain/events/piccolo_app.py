from pathlib import Path

from piccolo.conf.apps import AppConfig

from domain.events.tables import ClinicSequence, Event

APP_CONFIG = AppConfig(
    app_name="events",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=[ClinicSequence, Event],
    migration_dependencies=["domain.tenancy.piccolo_app"],
)

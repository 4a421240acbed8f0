from pathlib import Path

from piccolo.conf.apps import AppConfig

from domain.tenancy.tables import Clinic, Invitation, Location, Membership

APP_CONFIG = AppConfig(
    app_name="tenancy",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=[Clinic, Location, Membership, Invitation],
    migration_dependencies=["domain.identity.piccolo_app"],
)

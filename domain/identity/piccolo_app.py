from pathlib import Path

from piccolo.conf.apps import AppConfig

from domain.identity.tables import RefreshToken, Session, User

APP_CONFIG = AppConfig(
    app_name="identity",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=[User, Session, RefreshToken],
)

from pathlib import Path

from piccolo.conf.apps import AppConfig

from domain.jobs.tables import DeadJob, JobRun, ScheduledJob

APP_CONFIG = AppConfig(
    app_name="jobs",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=[ScheduledJob, JobRun, DeadJob],
)

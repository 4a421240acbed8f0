from pathlib import Path

from piccolo.conf.apps import AppConfig

from domain.scheduling.tables import Appointment, AppointmentTransition, DoctorSchedule, TimeOff

APP_CONFIG = AppConfig(
    app_name="scheduling",
    migrations_folder_path=str(Path(__file__).parent / "piccolo_migrations"),
    table_classes=[DoctorSchedule, TimeOff, Appointment, AppointmentTransition],
    migration_dependencies=["domain.tenancy.piccolo_app"],
)

"""Piccolo's engine and app registry. The DSN is read when first used, so the CLI can start
the embedded PostgreSQL and set DATABASE_URL before any query runs."""

import os

from piccolo.conf.apps import AppRegistry
from piccolo.engine.postgres import PostgresEngine

DB = PostgresEngine(config={"dsn": os.environ.get("DATABASE_URL", "")})

APP_REGISTRY = AppRegistry(
    apps=[
        "domain.identity.piccolo_app",
        "domain.tenancy.piccolo_app",
        "domain.audit.piccolo_app",
        "domain.events.piccolo_app",
        "domain.jobs.piccolo_app",
        "domain.scheduling.piccolo_app",
        "domain.queueing.piccolo_app",
        "domain.communication.piccolo_app",
        "domain.inbox.piccolo_app",
        "domain.notifications.piccolo_app",
        "domain.billing.piccolo_app",
        "domain.video.piccolo_app",
    ]
)

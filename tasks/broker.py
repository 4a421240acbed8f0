"""Taskiq on Redis Streams: a message is acknowledged after its task ran, so a job held by a
killed worker is reclaimed by another after `job_reclaim_seconds`."""

from __future__ import annotations

from taskiq_redis import RedisStreamBroker

from domain import kv, settings
from tasks import (  # noqa: F401  (register their jobs)
    billing_pdf,
    billing_reconcile,
    maintenance,
    webhooks,
)
from tasks.runner import execute

EXECUTE = "carewire.execute"
TICK = "carewire.tick"


async def tick() -> None:
    """A no-op sent periodically: taskiq-redis reclaims stale messages only when a read returns
    a new one, so an idle queue would keep a dead worker's job forever."""


def build_broker() -> RedisStreamBroker:
    cfg = settings.get()
    broker = RedisStreamBroker(
        cfg.redis_url,
        queue_name=kv.key("jobs"),
        consumer_group_name="carewire-workers",
        idle_timeout=int(cfg.job_reclaim_seconds * 1000),
        xread_block=1000,
    )
    broker.register_task(execute, task_name=EXECUTE)
    broker.register_task(tick, task_name=TICK)
    return broker

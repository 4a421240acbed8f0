"""`carewire worker`: the Taskiq receiver, the job scheduler, the outbox relay, the
notifications consumer, the reminder loop and the outbound delivery loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from taskiq.receiver import Receiver

from domain import db, kv
from domain.communication.providers import http as provider_http
from domain.communication.providers import ses
from tasks.broker import build_broker
from tasks.delivery import DeliveryLoop
from tasks.notifications import NotificationLoop
from tasks.outbox_relay import Relay
from tasks.reminders import ReminderLoop
from tasks.runner import ensure_periodic
from tasks.scheduler import run_scheduler
from tasks.wakeups import Wakeups

log = logging.getLogger("carewire.worker")


async def run_worker(concurrency: int = 10, delivery_concurrency: int = 50) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    pool_size = concurrency + min(delivery_concurrency, 20) + 4
    await db.engine().start_connection_pool(min_size=1, max_size=pool_size)
    broker = build_broker()
    await broker.startup()
    await ensure_periodic()
    relay = Relay()
    relay.start()
    wakeups = Wakeups()
    delivery = DeliveryLoop(wakeups, concurrency=delivery_concurrency)
    notifications = NotificationLoop(wakeups)
    reminder_loop = ReminderLoop(wakeups)
    delivery.start()
    notifications.start()
    reminder_loop.start()
    receiver = Receiver(broker, max_async_tasks=concurrency, run_startup=False)
    tasks = [asyncio.create_task(receiver.listen(stop), name="receiver"),
             asyncio.create_task(run_scheduler(broker, stop, wakeups), name="scheduler")]
    log.info("carewire worker started")
    await stop.wait()
    # taskiq-redis's read loop only returns when a message arrives, so the receiver may not see
    # the stop on an idle queue: give running jobs a grace period, then cancel. A job cut short
    # stays unacknowledged and another worker reclaims it (its effect still happens once).
    # (one grace period for both, not one each: a stop is bounded however many there are)
    _, pending = await asyncio.wait(tasks, timeout=3)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    log.info("stopping: reminders")
    await reminder_loop.stop()
    log.info("stopping: notifications")
    await notifications.stop()
    log.info("stopping: delivery")
    await delivery.stop()
    log.info("stopping: relay")
    await relay.stop()
    await wakeups.close()
    await provider_http.close()
    await ses.close()
    log.info("stopping: broker")
    await broker.shutdown()
    log.info("stopping: database pool")
    pool = db.engine().pool
    try:  # a connection still held would make close() wait for ever
        await asyncio.wait_for(db.engine().close_connection_pool(), timeout=5)
    except TimeoutError:
        log.warning("database connections still held after 5 s; terminating them")
        if pool is not None:
            pool.terminate()
    await kv.close()
    log.info("carewire worker stopped")

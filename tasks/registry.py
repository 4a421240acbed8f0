"""The jobs a worker can run, by name. A job is `async def fn(*, job_key, payload)`; one whose
effect must happen once calls `domain.jobs.commands.claim_once` in the effect's transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

JobFn = Callable[..., Awaitable[None]]


@dataclass(frozen=True)
class Job:
    name: str
    fn: JobFn
    max_attempts: int = 5
    #: Seconds between runs for a job the worker keeps scheduled; None for one-off jobs.
    every: float | None = None


JOBS: dict[str, Job] = {}


def job(name: str, *, max_attempts: int = 5, every: float | None = None) -> Callable[[JobFn], JobFn]:
    def register(fn: JobFn) -> JobFn:
        JOBS[name] = Job(name=name, fn=fn, max_attempts=max_attempts, every=every)
        return fn

    return register


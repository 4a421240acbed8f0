"""Waiting-room queues. Importing the package registers queueing's handler of appointment
transitions (`commands._follow_appointment`) with scheduling, so every process that runs
commands has it."""

from domain.queueing import commands as _commands  # noqa: F401 - registers the handler

"""Notifications: which domain events become messages, to whom, on which channels and when.
Reads the event log with a cursor per clinic, keeps each user's preferences and in-app inbox,
and schedules appointment reminders in the job table. Sending itself is communication's
(`domain.communication.commands.messages.enqueue`); the text is rendered from its templates."""

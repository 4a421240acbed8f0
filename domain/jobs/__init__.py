"""Durable job scheduling in PostgreSQL: what should run, when, and whether it already ran."""

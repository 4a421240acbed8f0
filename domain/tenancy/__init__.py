"""Clinics, locations, memberships and per-clinic settings."""

"""Doctors' weekly hours, availability and appointments."""

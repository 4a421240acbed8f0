"""Roles, the permission matrix and ownership rules: who may do what, on which object."""

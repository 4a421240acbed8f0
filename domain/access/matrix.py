"""The permission matrix, read once from permissions.txt (a table a person can review)."""

from __future__ import annotations

import enum
from functools import lru_cache
from pathlib import Path

from domain.access.roles import Role

_COLUMNS = {
    "SA": Role.SUPER_ADMIN,
    "CA": Role.CLINIC_ADMIN,
    "LH": Role.LOCATION_HEAD,
    "DR": Role.DOCTOR,
    "NU": Role.NURSE,
    "RE": Role.RECEPTIONIST,
    "PH": Role.PHARMACIST,
    "LT": Role.LAB_TECHNICIAN,
    "PA": Role.PATIENT,
    "AC": Role.ACCOUNTANT,
    "IM": Role.INVENTORY_MANAGER,
    "AU": Role.SYSTEM_AUDITOR,
}


class Scope(enum.StrEnum):
    ANY = "*"
    LOCATION = "L"
    OWN = "O"
    DENY = "-"


Matrix = dict[str, dict[Role, Scope]]

PATH = Path(__file__).with_name("permissions.txt")


def parse(text: str) -> Matrix:
    header: list[Role] | None = None
    matrix: Matrix = {}
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            words = line.lstrip("#").split()
            if words and words[0] == "permission":
                header = [_COLUMNS[w] for w in words[1:]]
            continue
        if header is None:
            raise ValueError(f"line {lineno}: permission row before the header row")
        name, *cells = line.split()
        if ":" not in name or len(cells) != len(header):
            raise ValueError(f"line {lineno}: expected resource:action and {len(header)} cells")
        if name in matrix:
            raise ValueError(f"line {lineno}: {name} listed twice")
        matrix[name] = {role: Scope(cell) for role, cell in zip(header, cells, strict=True)}
    if header is None or set(header) != set(Role):
        raise ValueError("the header must name each of the 12 roles once")
    return matrix


@lru_cache(maxsize=1)
def load() -> Matrix:
    return parse(PATH.read_text())


def scope_of(permission: str, role: Role) -> Scope:
    """Deny by default: an unknown permission is held by nobody."""
    row = load().get(permission)
    return row.get(role, Scope.DENY) if row else Scope.DENY

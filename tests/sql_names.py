"""What the code's SQL names, read from the source: the tables each context's migrations
create, and the tables (and inserted columns) named in a module's string literals. Used by the
ownership rule (test_structure.py) and the schema-of-record check (tests/gateway/test_schema.py)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: A table named in SQL: after FROM, JOIN, INTO, UPDATE, TABLE or TRUNCATE.
_NAMED_TABLE = re.compile(
    r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE|TRUNCATE)\s+(?:ONLY\s+)?(?:public\.)?(\w+)", re.I)
_CREATED_TABLE = re.compile(r"\bCREATE\s+(?:UNLOGGED\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)
_INSERT_COLUMNS = re.compile(r"\bINSERT\s+INTO\s+(?:public\.)?(\w+)\s*\(([^)]*)\)", re.I)


def table_owners() -> dict[str, str]:
    """Each table's context: the one whose migrations create it."""
    owners: dict[str, str] = {}
    for migration in (ROOT / "domain").glob("*/piccolo_migrations/*.py"):
        for table in _CREATED_TABLE.findall(migration.read_text()):
            owners[table] = migration.parent.parent.name
    return owners


def sql_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of a module's string literals, f-string parts included and docstrings
    left out (prose says "from the users" without querying anything)."""
    tree = ast.parse(source)
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return sorted((node.lineno, node.value) for node in ast.walk(tree)
                  if isinstance(node, ast.Constant) and isinstance(node.value, str)
                  and id(node) not in docstrings)


def tables_named(source: str) -> list[tuple[int, str]]:
    """(line, table) for every table named in the SQL of a module's strings."""
    return [(line, table) for line, text in sql_strings(source)
            for table in _NAMED_TABLE.findall(text)]


def inserted_columns(source: str) -> list[tuple[int, str, str]]:
    """(line, table, column) for the column lists of a module's `INSERT INTO t (...)`."""
    return [(line, table, column.strip()) for line, text in sql_strings(source)
            for table, columns in _INSERT_COLUMNS.findall(text)
            for column in columns.split(",") if column.strip()]


def python_files(*packages: str) -> list[Path]:
    """The packages' modules, migrations aside (their SQL is the record, not a use of it)."""
    return sorted(path for package in packages for path in (ROOT / package).rglob("*.py")
                  if "piccolo_migrations" not in path.parts)

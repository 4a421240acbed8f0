"""The docs are the contract, so they are checked like code: the README's settings table is what
`carewire settings --markdown` prints, every event the code can emit is in docs/realtime.md,
and no document points outside the repository."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import msgspec

import domain
from domain.events.envelope import DomainEvent, Envelope

ROOT = Path(__file__).resolve().parent.parent
SKIP = {".venv", "node_modules", ".git", ".carewire", ".pytest_cache"}
DOCS = sorted(p for p in ROOT.rglob("*.md") if SKIP.isdisjoint(p.relative_to(ROOT).parts))
BEGIN, END = "<!-- settings:begin (generated: carewire settings --markdown) -->\n", "<!-- settings:end -->"


def carewire(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_readme_settings_table_is_the_generated_one():
    done = carewire("settings", "--markdown")
    assert done.returncode == 0, done.stderr
    readme = (ROOT / "README.md").read_text()
    assert BEGIN in readme and END in readme, "the README lost its settings-table markers"
    table = readme.split(BEGIN, 1)[1].split(END, 1)[0]
    assert table == done.stdout, "README.md's settings table drifted: paste `carewire settings --markdown`"


def test_the_table_has_a_row_per_setting():
    rows = carewire("settings", "--markdown").stdout.splitlines()[2:]
    from domain.settings import Settings

    assert len(rows) == len(Settings.__struct_fields__)
    assert all(row.count(" | ") >= 2 and not row.endswith("|  |") for row in rows)


def all_event_classes() -> list[type[DomainEvent]]:
    """Every DomainEvent subclass with a TYPE, found by importing all of domain/."""
    for module in pkgutil.walk_packages(domain.__path__, "domain."):
        if "piccolo_migrations" not in module.name:
            importlib.import_module(module.name)
    found: list[type[DomainEvent]] = []
    todo = list(DomainEvent.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if "TYPE" in cls.__dict__:
            found.append(cls)
    return sorted(found, key=lambda c: c.TYPE)


def test_every_event_type_and_field_is_in_the_socket_protocol_doc():
    doc = (ROOT / "docs" / "realtime.md").read_text()
    events = all_event_classes()
    assert len(events) >= 15  # the walk found the contexts' events, not nothing
    missing = [f"{cls.__module__}.{cls.__name__}: `{cls.TYPE}`" for cls in events
               if f"`{cls.TYPE}`" not in doc]
    assert missing == [], "events without documentation in docs/realtime.md"
    fields = {(cls.TYPE, f.name) for cls in events for f in msgspec.structs.fields(cls)}
    fields |= {("envelope", f.name) for f in msgspec.structs.fields(Envelope)}
    undocumented = sorted(f"{t}.{name}" for t, name in fields if f"`{name}`" not in doc)
    assert undocumented == [], "payload fields without documentation in docs/realtime.md"


LINK = re.compile(r"\]\(([^)#\s]+)[^)]*\)")


def test_docs_link_nothing_outside_the_repository():
    assert {ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "docs" / "realtime.md"} <= set(DOCS)
    outside, broken = [], []
    for path in DOCS:
        text = path.read_text()
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue  # a web address (the official socket.io docs, RFCs)
            resolved = (path.parent / target).resolve()
            if not resolved.is_relative_to(ROOT):
                outside.append(f"{path.name}: {target}")
            elif not resolved.exists():
                broken.append(f"{path.name}: {target}")
        outside += [f"{path.name}: {m}" for m in re.findall(r"\.\./shared\S*", text)]
    assert outside == []
    assert broken == []


def test_ci_runs_the_readme_test_command_and_the_checkers():
    readme = (ROOT / "README.md").read_text()
    command = readme.split("## Run the tests", 1)[1].split("```sh\n", 1)[1].split("\n", 1)[0]
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/pytest" in command and command in ci
    assert ".venv/bin/ruff check ." in ci and ".venv/bin/mypy" in ci
    assert 'exit "$status"' in ci  # a failure of any of them fails the run

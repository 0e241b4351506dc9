"""Numbered schema migrations: ``sql/NNN_name.sql`` files applied once each, in order."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations(package: str = "flowbus.engine.store", folder: str = "sql") -> list[Migration]:
    """Every migration shipped in ``<package>/<folder>``, sorted by number."""
    found = []
    for entry in resources.files(package).joinpath(folder).iterdir():
        match = re.fullmatch(r"(\d{3})_(\w+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text()))
    found.sort(key=lambda m: m.version)
    return found


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements (ours hold no semicolons inside literals)."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return [part.strip() for part in "\n".join(lines).split(";") if part.strip()]

"""docs/cli.md's headings are the commands as they are: each ``flowbus ...`` synopsis names
commands that exist and options those commands take. Read from the command tree itself (the
click commands Typer builds), so a renamed option or a removed command fails here, not in a
reader's terminal."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import typer

from flowbus.cli.app import COMMANDS, app

ROOT = Path(__file__).resolve().parents[2]
HEADING = re.compile(r"^#+ .*$", re.MULTILINE)
SYNOPSIS = re.compile(r"`(flowbus [^`]+)`")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])(?![\w-])")
WORD = re.compile(r"^[a-z][a-z-]*$")


def synopses() -> list[str]:
    text = (ROOT / "docs" / "cli.md").read_text()
    return [s for h in HEADING.findall(text) for s in SYNOPSIS.findall(h) if s != "flowbus"]


def root() -> Any:
    return typer.main.get_command(app)


def is_group(command: Any) -> bool:
    return hasattr(command, "list_commands")


def subcommand(group: Any, name: str) -> Any:
    # Typer carries its own click: a context is made the way the group's own class makes one.
    return group.get_command(group.context_class(group), name)


def commands_of(synopsis: str) -> list[Any]:
    """The commands a synopsis names: a path of words (``runs show``), then either one command
    or, where the path reaches a group, each alternative of ``a X | b | c Y`` (or ``a|b``) it
    lists. An option's values (``--sync default|always``) are not alternatives."""
    words = synopsis.split()[1:]
    current = root()
    for index, word in enumerate(words):
        if not is_group(current):
            return [current]
        found = subcommand(current, word) if WORD.match(word) else None
        if found is not None and (is_group(found) or "|" not in " ".join(words[index:])):
            current = found
            continue
        named = alternatives(words[index:])
        if not named:
            return [current]  # the group's own options (``flowbus events [--run ID]``)
        commands = [subcommand(current, n) for n in named]
        missing = [n for n, c in zip(named, commands, strict=True) if c is None]
        assert missing == [], f"{synopsis!r}: {current.name!r} has no command {missing}"
        return [current, *commands]
    return [current]


def alternatives(words: list[str]) -> list[str]:
    """The command names in ``ls|pause Q|resume Q`` or ``set NAME | get NAME | ls``."""
    first = words[0].split("|")[0]
    named = [first] if WORD.match(first) else []
    after_option = False
    for position, word in enumerate(words):
        if word == "|" and position + 1 < len(words):
            named.append(words[position + 1])
        elif "|" in word and not after_option:
            named.extend(w for w in word.split("|")[1:] if WORD.match(w))
        after_option = word.lstrip("[").startswith("-")
    return named


def options_of(command: Any) -> set[str]:
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


def test_the_docs_name_every_top_level_command() -> None:
    text = (ROOT / "docs" / "cli.md").read_text()
    missing = [n for n, c in COMMANDS.items() if not c.hidden and f"`flowbus {n}" not in text
               and f"flowbus {n}" not in text]  # fmt: skip
    assert missing == [], f"commands docs/cli.md never mentions: {missing}"


@pytest.mark.parametrize("synopsis", synopses())
def test_each_synopsis_names_real_commands_and_options(synopsis: str) -> None:
    commands = commands_of(synopsis)
    accepted: set[str] = set().union(*(options_of(c) for c in commands))
    documented = set(OPTION.findall(synopsis))
    unknown = sorted(documented - accepted)
    names = [c.name for c in commands]
    assert unknown == [], f"{synopsis!r}: {names} take no {unknown}"


def test_the_checker_fails_on_what_is_not_there() -> None:
    def refused(synopsis: str) -> Any:
        with pytest.raises(AssertionError):
            test_each_synopsis_names_real_commands_and_options(synopsis)

    refused("flowbus runs ls [--colour]")
    refused("flowbus queues ls|frobnicate Q")
    refused("flowbus nosuch thing")
    test_each_synopsis_names_real_commands_and_options("flowbus queues ls|pause Q [--json]")

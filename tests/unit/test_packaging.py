"""Every package of the source tree is in pyproject.toml's list, so a wheel (not only the
editable install the tests run from) holds it; each data folder with its files."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_and_data_folder_is_listed() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {"flowbus": ROOT / "flowbus", "flowbus.engine": ROOT / "engine",
             "flowbus.broker": ROOT / "broker", "flowbus.agents": ROOT / "agents"}  # fmt: skip
    found = set()
    for name, folder in roots.items():
        for init in folder.rglob("__init__.py"):
            relative = init.parent.relative_to(folder).parts
            if any(part in ("engine", "broker", "agents") for part in relative[:1]) and (
                name == "flowbus"
            ):
                continue  # the links to the top-level folders, seen from flowbus/
            found.add(".".join((name, *relative)))
    assert found - listed == set(), "packages missing from pyproject.toml"
    data = config["package-data"]
    for package, patterns in data.items():
        assert package in listed, package
        folder = roots.get(package)
        if folder is None:
            head = next(r for r in sorted(roots, key=len, reverse=True) if package.startswith(r))
            folder = roots[head].joinpath(*package.removeprefix(head).strip(".").split("."))
        assert any(any(folder.glob(p)) for p in patterns), (package, patterns)

"""The wire's versions (``broker/versions.py``): what a reader makes of a sender's version, and
that the messages only ever grow within a major version.

``tests/unit/wire/MAJOR.MINOR.json`` holds each released minor's messages (every protocol model
and event model: its fields, whether each is required, its type). The models of this code must
equal the file of its own version, and keep every model and field of the older ones, with the
same type, requiring nothing they did not require. A change to a message is therefore a new
minor version: bump ``MINOR`` and write its file (``python -m tests.unit.test_wire_versions``).
"""

from __future__ import annotations

import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from flowbus.broker import protocol as p
from flowbus.broker import protocol_slots, run_documents, versions
from flowbus.engine import events as e
from flowbus.engine.events import DecodeError, decode_event, parse_event
from tests.integration.store_contract import RunBuilder

FOLDER = Path(__file__).parent / "wire"


def wire_models() -> dict[str, Any]:
    found: dict[str, Any] = {}
    for module, base in ((p, p._Message), (protocol_slots, p._Message), (run_documents, p._Message),
                         (e, e._Frozen)):  # fmt: skip
        for name, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, base) and not name.startswith("_Me"):
                found[name] = cls
    found.pop("_Frozen", None)
    return found


#: A type's module path (``flowbus.broker.protocol.``): where a model lives is not the wire.
QUALIFIED = re.compile(r"\b(?:[a-z_][a-z0-9_]*\.)+(?=[A-Z_])")


def type_name(annotation: Any) -> str:
    return QUALIFIED.sub("", str(annotation))


def snapshot() -> dict[str, dict[str, dict[str, Any]]]:
    return {
        name: {
            field: {"required": info.is_required(), "type": type_name(info.annotation)}
            for field, info in sorted(cls.model_fields.items())
        }
        for name, cls in sorted(wire_models().items())
    }


def released() -> dict[tuple[int, int], Any]:
    files = {}
    for path in FOLDER.glob("*.json"):
        major, minor = path.stem.split(".")
        files[(int(major), int(minor))] = json.loads(path.read_text())
    return files


def test_this_versions_messages_are_the_ones_its_file_holds() -> None:
    files = released()
    assert (versions.MAJOR, versions.MINOR) in files, f"write {FOLDER}/{versions.VERSION}.json"
    mine = files[(versions.MAJOR, versions.MINOR)]
    assert snapshot() == mine, (
        "a message changed within protocol " + versions.VERSION + ": a change is a new minor "
        "version (bump MINOR in broker/versions.py, then python -m tests.unit.test_wire_versions)"
    )


@pytest.mark.parametrize("older", sorted(released()))
def test_a_minor_version_only_adds(older: tuple[int, int]) -> None:
    if older[0] != versions.MAJOR:
        pytest.skip("another major version: no promise")
    before, now = released()[older], snapshot()
    for model, fields in before.items():
        assert model in now, f"{model} of {older} is gone"
        for field, was in fields.items():
            assert field in now[model], f"{model}.{field} of {older} is gone"
            assert now[model][field]["type"] == was["type"], f"{model}.{field} changed type"
            assert was["required"] or not now[model][field]["required"], f"{model}.{field}"
        for field in set(now[model]) - set(fields):
            assert not now[model][field]["required"], f"{model}.{field} is new and required"


def test_what_a_reader_makes_of_a_senders_version() -> None:
    assert versions.of(None) == (1, 0) and versions.of({}) == (1, 0)  # before the header
    assert versions.of({versions.HEADER: "1.7"}) == (1, 7)
    assert versions.of({versions.HEADER: "one"}) is None
    assert versions.problem({versions.HEADER: "2.0"}) is not None
    assert "MAJOR.MINOR" in (versions.problem({versions.HEADER: "1"}) or "")
    assert versions.problem(None) is None and versions.problem(versions.HEADERS) is None
    newer = {versions.HEADER: f"{versions.MAJOR}.{versions.MINOR + 1}"}
    assert versions.newer(newer) and not versions.newer(versions.HEADERS)
    assert not versions.newer(None)


def test_a_newer_minors_fields_are_set_aside_and_the_rest_still_checked() -> None:
    claim = {"run_id": "r", "agent": "a", "attempt_hint": "from 1.2"}
    body = json.dumps(claim).encode()
    with pytest.raises(p.ProtocolError, match="attempt_hint"):
        p.decode(p.ClaimRequest, body)  # a sender of this version (or older) made a mistake
    assert p.decode(p.ClaimRequest, body, tolerant=True).run_id == "r"
    with pytest.raises(p.ProtocolError):  # a known field with a wrong value is never forgiven
        p.decode(p.ClaimRequest, json.dumps({**claim, "run_id": 5}).encode(), tolerant=True)
    with pytest.raises(p.ProtocolError):
        p.decode(p.ClaimRequest, b"{not json", tolerant=True)

    created = dict(RunBuilder().created().data)
    created["lineage"] = ["from 1.2"]
    created["state"] = {**created["state"], "colour": "green"}
    wire = json.dumps(created)
    with pytest.raises(DecodeError):
        decode_event(wire)
    assert decode_event(wire, tolerant=True).type == "flow_run.created"
    assert parse_event(created).type == "flow_run.created"  # read back from the store


if __name__ == "__main__":  # write this version's file
    target = FOLDER / f"{versions.VERSION}.json"
    target.write_text(json.dumps(snapshot(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {target}", file=sys.stderr)

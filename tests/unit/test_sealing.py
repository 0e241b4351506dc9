"""Pickled bytes are unpickled only when flowbus can prove it wrote them: refused refs and
seals, each reader's path, and the key's life (made once, rotated, shared)."""

from __future__ import annotations

import base64
import os
import pickle
import stat
import threading
from pathlib import Path

import cloudpickle
import pytest

from flowbus.engine.caching import CacheStore
from flowbus.engine.results import (
    OutputStorage,
    ResultMissing,
    ResultRefused,
    ResultUncheckable,
    decode_output,
    encode_output,
)
from flowbus.engine.sealing import (
    MAGIC,
    NoResultKey,
    UnsealError,
    key_file,
    new_key,
    result_keys,
    seal,
    unseal,
)


class Boom:
    """Unpickling this runs code: the canary of every test below."""

    ran = False

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (Boom.explode, ())

    @staticmethod
    def explode() -> None:
        Boom.ran = True


@pytest.fixture(autouse=True)
def home(flowbus_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("FLOWBUS_RESULT_KEYS", raising=False)
    monkeypatch.setenv("FLOWBUS_RESULT_STORAGE", str(flowbus_home / "results" / "runs"))
    Boom.ran = False
    return flowbus_home


def storage(home: Path) -> OutputStorage:
    return OutputStorage(str(home / "results" / "runs"))


def test_a_written_result_reads_back_and_the_key_file_is_private(home: Path) -> None:
    output = encode_output(("a", 1), "run/task", storage(home))
    assert decode_output(output) == ("a", 1)
    assert stat.S_IMODE(key_file().stat().st_mode) == 0o600
    assert Path(output["ref"]).read_bytes().startswith(MAGIC)


@pytest.mark.parametrize(
    "ref",
    [
        "data:application/octet-stream;base64,"
        + base64.b64encode(cloudpickle.dumps(Boom())).decode(),
        "/etc/passwd",
        "{root}/../escaped",
        "{root}/../runs-sibling/x",
        "file://{root}/../../elsewhere",
        "memory://results/runs/x",
    ],
)
def test_a_ref_outside_result_storage_is_refused_unread(home: Path, ref: str) -> None:
    root = str(home / "results" / "runs")
    outside = home / "escaped"
    outside.write_bytes(seal(cloudpickle.dumps(Boom())))  # even sealed: not under storage
    with pytest.raises(ResultRefused, match="outside result storage"):
        decode_output({"ref": ref.format(root=root), "serializer": "cloudpickle"})
    assert not Boom.ran


def test_unsealed_bytes_in_result_storage_are_refused(home: Path) -> None:
    planted = home / "results" / "runs" / "run" / "planted"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(cloudpickle.dumps(Boom()))
    encode_output(("a", 1), "run/other", storage(home))  # a key exists: the seal is what fails
    with pytest.raises(ResultRefused, match="not sealed"):
        decode_output({"ref": str(planted)})
    assert not Boom.ran


def test_bytes_sealed_with_another_key_or_changed_are_refused(home: Path) -> None:
    output = encode_output(("a", 1), "run/task", storage(home))
    path = Path(output["ref"])
    forged = seal(cloudpickle.dumps(Boom()), [bytes.fromhex(new_key())])
    path.write_bytes(forged)
    with pytest.raises(ResultRefused, match="no result key here made"):
        decode_output(output)
    genuine = seal(cloudpickle.dumps(("a", 1)))
    path.write_bytes(genuine[:-1] + bytes([genuine[-1] ^ 1]))  # one bit changed
    with pytest.raises(ResultRefused):
        decode_output(output)
    assert not Boom.ran


def test_a_reader_without_a_key_cannot_check_and_reads_nothing(home: Path) -> None:
    output = encode_output(("a", 1), "run/task", storage(home))
    key_file().unlink()
    with pytest.raises(ResultUncheckable, match="no result key here"):
        decode_output(output)
    assert not key_file().exists()  # a reader makes no key of its own


def test_a_missing_file_is_missing_not_refused(home: Path) -> None:
    output = encode_output(("a", 1), "run/task", storage(home))
    Path(output["ref"]).unlink()
    with pytest.raises(ResultMissing) as missing:
        decode_output(output)
    assert not isinstance(missing.value, ResultRefused)


def test_keys_rotate_the_first_signs_and_every_one_verifies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old, new = new_key(), new_key()
    monkeypatch.setenv("FLOWBUS_RESULT_KEYS", old)
    sealed_by_old = seal(b"payload")
    monkeypatch.setenv("FLOWBUS_RESULT_KEYS", f"{new},{old}")
    assert unseal(sealed_by_old) == b"payload"
    assert unseal(seal(b"next"), [bytes.fromhex(new)]) == b"next"
    monkeypatch.setenv("FLOWBUS_RESULT_KEYS", new)
    with pytest.raises(UnsealError):
        unseal(sealed_by_old)


@pytest.mark.parametrize("bad", ["not-hex", "abcd"])
def test_a_bad_key_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("FLOWBUS_RESULT_KEYS", bad)
    with pytest.raises(Exception, match="FLOWBUS_RESULT_KEYS: a key"):
        result_keys()


def test_processes_racing_to_make_the_key_agree_on_one() -> None:
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(result_keys(True)[0])) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(keys)) == 1
    assert not [p for p in key_file().parent.iterdir() if p.name != key_file().name]


def test_no_key_means_no_check(home: Path) -> None:
    with pytest.raises(NoResultKey):
        unseal(MAGIC + os.urandom(40))


def test_the_cache_treats_an_unsealed_or_forged_entry_as_a_miss(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.write("good", {"rows": 3})
    hit = store.read("good")
    assert hit is not None and hit.value == {"rows": 3}
    (tmp_path / "planted").write_bytes(pickle.dumps(Boom()))
    assert store.read("planted") is None
    (tmp_path / "forged").write_bytes(seal(pickle.dumps(Boom()), [bytes.fromhex(new_key())]))
    assert store.read("forged") is None
    assert not Boom.ran

"""Transactions: a group of task runs whose results are kept, and whose side effects are kept,
only if the whole group succeeds (Prefect's ``prefect.transactions``).

    with transaction(key="daily-load") as txn:
        if not txn.is_committed():
            write_file(rows)      # its @write_file.on_rollback hook deletes the file
            check_file()          # raises: write_file's rollback hook runs, the error goes on

Each task run inside a transaction gets one of its own, a child: its result is staged, and
with the default commit mode (LAZY) it is committed only when the outermost transaction
commits (its result written under its cache key, its ``on_commit`` hooks called). An exception
leaving the ``with`` block rolls back every child that was not committed yet, newest first,
calling their ``on_rollback`` hooks. A committed key is remembered in result storage: the next
transaction (or cached task) with that key finds it committed and can skip the work.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import timedelta
from typing import Any

from flowbus.engine.caching import CacheStore
from flowbus.engine.run_logging import record_log


class CommitMode(enum.StrEnum):
    EAGER = "EAGER"  #: children commit as soon as they finish
    LAZY = "LAZY"  #: children commit when the outermost transaction does (the default)
    OFF = "OFF"  #: nothing is ever committed


class IsolationLevel(enum.StrEnum):
    READ_COMMITTED = "READ_COMMITTED"
    #: One transaction with a given key at a time in this process (others wait).
    SERIALIZABLE = "SERIALIZABLE"


class TransactionState(enum.StrEnum):
    PENDING = "PENDING"
    ACTIVE = "ACTIVE"
    STAGED = "STAGED"
    COMMITTED = "COMMITTED"
    ROLLED_BACK = "ROLLED_BACK"


Hook = Callable[["Transaction"], Any]
_current: ContextVar[Transaction | None] = ContextVar("flowbus_transaction", default=None)
_key_locks: dict[str, threading.Lock] = {}
_key_locks_guard = threading.Lock()
_NOTHING: Any = object()


def _lock_for(key: str) -> threading.Lock:
    with _key_locks_guard:
        return _key_locks.setdefault(key, threading.Lock())


class Transaction:
    """One transaction; use ``transaction(...)`` to open one as a context manager."""

    def __init__(
        self,
        key: str | None = None,
        store: CacheStore | None = None,
        commit_mode: CommitMode | None = None,
        isolation_level: IsolationLevel | None = None,
        overwrite: bool = False,
        expiration: timedelta | None = None,
        write_on_commit: bool = True,
    ) -> None:
        self.key = key
        self.store = store
        self.commit_mode = commit_mode
        self.isolation_level = isolation_level or IsolationLevel.READ_COMMITTED
        self.overwrite = overwrite
        self.expiration = expiration
        self.write_on_commit = write_on_commit
        self.state = TransactionState.PENDING
        self.children: list[Transaction] = []
        self.on_commit_hooks: list[Hook] = []
        self.on_rollback_hooks: list[Hook] = []
        self._staged: Any = _NOTHING
        self._values: dict[str, Any] = {}
        self._parent: Transaction | None = None
        self._token: Token[Transaction | None] | None = None
        self._lock = threading.Lock()
        self._held: threading.Lock | None = None

    def __repr__(self) -> str:
        return f"Transaction(key={self.key!r}, state={self.state.value})"

    # -- reading ------------------------------------------------------------------------------

    def _store(self) -> CacheStore:
        if self.store is None:
            self.store = CacheStore()
        return self.store

    def is_committed(self) -> bool:
        return self.state is TransactionState.COMMITTED

    def is_rolled_back(self) -> bool:
        return self.state is TransactionState.ROLLED_BACK

    def is_staged(self) -> bool:
        return self.state is TransactionState.STAGED

    def is_active(self) -> bool:
        return self.state is TransactionState.ACTIVE

    def is_pending(self) -> bool:
        return self.state is TransactionState.PENDING

    def read(self) -> Any:
        """The value committed under this transaction's key (None when there is none)."""
        if self.key is None:
            return None
        found = self._store().read(self.key)
        return found.value if found is not None else None

    def set(self, name: str, value: Any) -> None:
        """Keep a value for the hooks (``transaction.get(name)`` in ``on_rollback``)."""
        self._values[name] = value

    def get(self, name: str, default: Any = _NOTHING) -> Any:
        """A value set on this transaction or, failing that, on one of its parents."""
        if name in self._values:
            return self._values[name]
        if self._parent is not None:
            return self._parent.get(name, default)
        if default is _NOTHING:
            raise ValueError(f"could not retrieve value for unknown key: {name}")
        return default

    def get_parent(self) -> Transaction | None:
        return self._parent

    # -- the life of a transaction ------------------------------------------------------------

    def __enter__(self) -> Transaction:
        if self.state is not TransactionState.PENDING:
            raise RuntimeError("a transaction can be entered once")
        parent = _current.get()
        self._parent = parent
        if self.commit_mode is None:
            self.commit_mode = parent.commit_mode if parent else CommitMode.LAZY
        if self.key and self.isolation_level is IsolationLevel.SERIALIZABLE:
            self._held = _lock_for(self.key)
            self._held.acquire()
        self.state = TransactionState.ACTIVE
        if self.key and not self.overwrite and self._store().read(self.key) is not None:
            self.state = TransactionState.COMMITTED
        if parent is not None:
            parent.add_child(self)
        self._token = _current.set(self)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if self._token is not None:
                _current.reset(self._token)
                self._token = None
            if exc_type is not None:
                self.rollback()
                return
            if self.commit_mode is CommitMode.EAGER:
                self.commit()
            elif self._parent is not None:
                return  # the parent commits or rolls back its children
            elif self.commit_mode is not CommitMode.OFF:
                self.commit()
        finally:
            if self._held is not None:
                self._held.release()
                self._held = None

    def add_child(self, child: Transaction) -> None:
        with self._lock:  # task runs in several threads join one parent
            self.children.append(child)

    def stage(
        self,
        value: Any,
        on_rollback_hooks: list[Hook] | None = None,
        on_commit_hooks: list[Hook] | None = None,
    ) -> None:
        """Hold ``value`` to be written under the key on commit, with the hooks to call."""
        if self.state is TransactionState.COMMITTED:
            return
        self._staged = value
        self.on_rollback_hooks.extend(on_rollback_hooks or [])
        self.on_commit_hooks.extend(on_commit_hooks or [])
        self.state = TransactionState.STAGED

    def commit(self) -> bool:
        """Commit the children, write the staged value, call the commit hooks."""
        if self.state in (TransactionState.COMMITTED, TransactionState.ROLLED_BACK):
            return False
        if self.commit_mode is CommitMode.OFF:
            return False
        for child in list(self.children):
            child.commit()
        try:
            if self.key and self.write_on_commit:
                # Nothing staged still commits the key (None as its value): the next run that
                # opens a transaction of this key finds it committed (Prefect's behaviour).
                staged = None if self._staged is _NOTHING else self._staged
                self._store().write(self.key, staged, self.expiration)
            self.state = TransactionState.COMMITTED
            for hook in self.on_commit_hooks:
                _call_hook(hook, self, "on_commit")
        except Exception as exc:
            record_log(logging.ERROR, "flowbus.transactions", f"commit failed: {exc!r}")
            self.state = TransactionState.ACTIVE
            self.rollback()
            return False
        return True

    def rollback(self) -> bool:
        """Roll back the uncommitted children, newest first, then call this one's hooks."""
        if self.state in (TransactionState.COMMITTED, TransactionState.ROLLED_BACK):
            return False
        for child in reversed(list(self.children)):
            child.rollback()
        for hook in self.on_rollback_hooks:
            _call_hook(hook, self, "on_rollback")
        self.state = TransactionState.ROLLED_BACK
        return True


def _call_hook(hook: Hook, txn: Transaction, kind: str) -> None:
    name = getattr(hook, "__name__", repr(hook))
    try:
        hook(txn)
    except Exception as exc:
        record_log(logging.ERROR, "flowbus.transactions", f"{kind} hook {name} raised {exc!r}")
        if kind == "on_commit":
            raise


def get_transaction() -> Transaction | None:
    """The innermost open transaction (a task's own while it runs), or None."""
    return _current.get()


@contextmanager
def transaction(
    key: str | None = None,
    store: CacheStore | None = None,
    commit_mode: CommitMode | None = None,
    isolation_level: IsolationLevel | None = None,
    overwrite: bool = False,
    write_on_commit: bool = True,
) -> Iterator[Transaction]:
    """Open a transaction; see the module's docstring."""
    with Transaction(
        key=key,
        store=store,
        commit_mode=commit_mode,
        isolation_level=isolation_level,
        overwrite=overwrite,
        write_on_commit=write_on_commit,
    ) as txn:
        yield txn

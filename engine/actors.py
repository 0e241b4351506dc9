"""Who causes what a person (or a program acting for one) causes: the actor recorded on the
events of submits, cancels, resumes, retries, deploys and document changes (the audit trail,
``flowbus audit``).

Set once per request or command, read where the event is made: the API sets the token's name
for each request, the CLI ``cli:<user>`` for a command on the store, a service's
``flowbus.Client`` the name of its NATS credential (``nats:<user>``). An actor named in a
request over NATS is the requester's own statement: as trustworthy as the credential that sent
it (docs/security.md).
"""

from __future__ import annotations

from contextvars import ContextVar

actor_var: ContextVar[str | None] = ContextVar("flowbus_actor", default=None)


def current_actor() -> str | None:
    return actor_var.get()


def cli_actor() -> str:
    """``cli:<the OS user>``, for a command that writes the store itself."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no user name for this uid (a container)
        import os

        return f"cli:uid-{os.getuid()}"


__all__ = ["actor_var", "cli_actor", "current_actor"]

"""The deployment B4 dispatches: a flow that does nothing, so dispatch is all that is measured."""

from flowbus import flow


@flow
def noop() -> None:
    return None

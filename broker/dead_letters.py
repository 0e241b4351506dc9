"""Dead letters: a message a daemon cannot use goes to ``flowbus.dead.<source>`` (a JetStream
stream) with the reason in its headers, so that nothing is dropped in silence and an operator
can look at it; then, if it came from JetStream, it is terminated so it is not redelivered."""

from __future__ import annotations

from typing import Any

import structlog
from nats.aio.msg import Msg

from flowbus.broker.subjects import dead_letter_subject

log = structlog.get_logger("flowbus.dead_letters")
#: How much of a message's body a dead letter keeps.
MAX_BYTES = 512 * 1024


async def dead_letter(
    js: Any, source: str, message: Msg, reason: str, *, terminate: bool, limit: int = MAX_BYTES
) -> bool:
    """Dead-letter ``message`` for ``reason``; returns False when the dead letter could not be
    published (logged). A JetStream message (``terminate=True``) is terminated only once its
    dead letter is stored: otherwise it stays, to be redelivered and tried again."""
    log.warning("dead-lettered a message", source=source, subject=message.subject,
                reason=reason[:500])  # fmt: skip
    headers = {"Flowbus-Error": reason[:1000], "Flowbus-Subject": message.subject}
    try:
        await js.publish(dead_letter_subject(source), message.data[:limit], headers=headers)
    except Exception as exc:
        log.warning("could not dead-letter", source=source, error=repr(exc))
        return False
    if terminate:
        try:
            await message.term()
        except Exception as exc:  # redelivered later, and dead-lettered again: no loss
            log.warning("could not terminate a dead letter", source=source, error=repr(exc))
    return True

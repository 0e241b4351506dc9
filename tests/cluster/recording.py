"""How the recording stands (run on the cluster test's client host when runs did not end):
``python recording.py``. Prints one JSON line: the recorder consumer's counters, which
orchestrator holds the leader lease (and its revision), and the recorder's dead letters by
reason."""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from typing import Any

from nats.js.errors import NotFoundError

from flowbus.agents.leadership import BUCKET, KEY
from flowbus.broker import subjects
from flowbus.broker.connection import connect


async def main() -> dict[str, Any]:
    client = await connect(name="recording-probe")
    js = client.jetstream()
    report: dict[str, Any] = {}
    try:
        try:
            info = await js.consumer_info(subjects.EVENTS_STREAM, subjects.RECORDER_CONSUMER)
            report["recorder"] = {
                "pending": info.num_pending,
                "ack_pending": info.num_ack_pending,
                "redelivered": info.num_redelivered,
                "delivered": info.delivered.stream_seq if info.delivered else None,
                "ack_floor": info.ack_floor.stream_seq if info.ack_floor else None,
                "leader": info.cluster.leader if info.cluster else None,
            }
        except NotFoundError:
            report["recorder"] = "no consumer"
        try:
            entry = await (await js.key_value(BUCKET)).get(KEY)
            value = entry.value.decode() if entry.value else None
            report["leader_lease"] = {"member": value, "revision": entry.revision}
        except Exception as exc:  # no leader: the report says so
            report["leader_lease"] = repr(exc)
        reasons: Counter[str] = Counter()
        subscription = await js.subscribe(subjects.dead_letter_subject("recorder"),
                                           stream=subjects.DEAD_LETTER_STREAM,
                                           ordered_consumer=True)  # fmt: skip
        while True:
            try:
                message = await subscription.next_msg(timeout=2)
            except Exception:  # none left
                break
            reason = (message.headers or {}).get("Flowbus-Error", "?")
            reasons[re.sub(r"[0-9a-f-]{36}", "RUN", reason)[:120]] += 1
        report["recorder_dead_letters"] = dict(reasons)
    finally:
        await client.close()
    return report


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main())))

"""Where this service leans on faust-streaming beyond its documented API, in one place.

faust-streaming 0.15.3 (pinned) has no public call for two things the partition lanes need:
- telling the consumer to stop waiting for a message that will never be acknowledged (a lane
  abandoned at a stop or rebalance) without counting it as done; and
- being told when Faust suspends its flow (a rebalance or a stop begins), before it waits for
  the messages in flight.
Each use is here, and ``tests/unit/test_faust_internals.py`` fails on an upgrade that changes
what it relies on.
"""

from __future__ import annotations

from typing import Any, Protocol

PINNED_FAUST = "0.15.3"


class Clearable(Protocol):
    def clear(self) -> None: ...


def forget_unacked(consumer: Any, message: Any) -> None:
    """Stop ``wait_empty`` from waiting for ``message``, leaving it unacknowledged.

    ``Consumer.unacked`` is the very set ``wait_empty`` drains; the committed offset stays
    before the message, so it is delivered again.
    """
    consumer.unacked.discard(message)


def clear_when_flow_stops(flow_control: Any, clearable: Clearable) -> None:
    """Have ``clearable.clear()`` called when Faust suspends its flow, and again when it resumes.

    Faust clears the queues its flow control manages right after suspending the flow (before a
    rebalance or a stop waits for the messages in flight); a managed object needs only ``clear``.
    """
    flow_control.manage_queue(clearable)

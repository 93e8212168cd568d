"""Where this service leans on faust-streaming beyond its documented API, in one place.

faust-streaming 0.15.3 (pinned) has no public call for two things the partition lanes need:
- telling the consumer to stop waiting for a message that will never be acknowledged (a lane
  abandoned at a stop or rebalance) without counting it as done; and
- being told when Faust suspends its flow (a rebalance or a stop begins), before it waits for
  the messages in flight.
And it has one bug this service must step around: a table's recovery resumes the stream
partitions with the consumer's flow still on (``stop_the_flow_while_the_streams_resume``).
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


def stop_the_flow_while_the_streams_resume(app: Any) -> None:
    """Stop the consumer's flow when a rebalance completes, before Faust resumes the stream partitions.

    With a table, faust-streaming 0.15.3 turns the consumer's flow on during the recovery to read
    the changelog, and leaves it on while ``Recovery.on_recovery_completed`` resumes the stream
    partitions and seeks them to their committed offsets. Its fetcher delivers records of those
    partitions into the stream queues meanwhile, noting them as read; then
    ``flow_control.resume()`` clears those queues. The records are gone from the pipeline, the
    re-fetch after the seek drops them as already read, and since they are never acknowledged the
    partition's committed offset stays behind them for good: the worker goes on processing and
    committing nothing (docs/reliability.md; ``tests/e2e/test_00_processed_table.py``).

    Without tables (``Recovery._resume_streams``) the flow is already off there, stopped when
    the rebalance began. Faust sends ``on_rebalance_complete`` at the start of both, before it
    resumes the partitions and seeks, and turns the flow on again after clearing the queues, so
    nothing is delivered in between; a fetch that returns meanwhile makes the fetcher seek back to
    the committed offsets, which is harmless.
    """

    async def stop_flow(sender: Any = None, **kwargs: Any) -> None:
        app.consumer.stop_flow()

    app.on_rebalance_complete.connect(stop_flow)

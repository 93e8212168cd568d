"""Tripwires for what acme_customer.entrypoints.faust_internals relies on in faust-streaming.

Each test fails loudly when an upgrade changes the behaviour; re-check the module then.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace
from typing import Any
from weakref import WeakSet

import faust
from faust.app.base import App
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from mode.signals import Signal
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from acme_customer.entrypoints.faust_internals import (
    PINNED_FAUST,
    clear_when_flow_stops,
    forget_unacked,
    stop_the_flow_while_the_streams_resume,
)


def test_faust_is_the_version_the_internals_were_checked_against() -> None:
    assert faust.__version__ == PINNED_FAUST, "faust-streaming changed: re-check faust_internals.py, then the pin"


def test_the_public_unacked_set_is_the_one_wait_empty_drains() -> None:
    assert "return cast(Set[Message], self._unacked_messages)" in inspect.getsource(Consumer.unacked.fget)
    assert "self._unacked_messages" in inspect.getsource(Consumer.wait_empty)


def test_forgetting_a_message_removes_it_from_what_the_consumer_waits_for() -> None:
    class Message:
        """Only its identity matters to the set (faust's messages are weak-referenceable objects)."""

    waiting, other = Message(), Message()
    consumer = SimpleNamespace(unacked=WeakSet([waiting, other]))  # faust keeps a WeakSet

    forget_unacked(consumer, waiting)

    assert set(consumer.unacked) == {other}


def test_a_managed_object_is_cleared_when_the_flow_is_cleared_and_resumed() -> None:
    cleared: list[str] = []

    class Lanes:
        def clear(self) -> None:
            cleared.append("clear")

    flow = FlowControlEvent()
    lanes = Lanes()
    clear_when_flow_stops(flow, lanes)
    flow.suspend()
    flow.clear()
    flow.resume()

    assert cleared == ["clear", "clear"]


def test_faust_clears_its_flow_right_after_suspending_it_on_revoke_and_on_stop() -> None:
    for method in (App._on_partitions_revoked, App._stop_consumer):
        source: Any = inspect.getsource(method)
        assert source.index("flow_control.suspend") < source.index("flow_control.clear"), method.__name__


def _in_order(source: str, *steps: str) -> list[int]:
    return [source.index(step) for step in steps]


def test_faust_signals_a_completed_rebalance_before_it_resumes_seeks_and_clears_the_streams() -> None:
    for method in (Recovery.on_recovery_completed, Recovery._resume_streams):
        source = inspect.getsource(method)
        positions = _in_order(
            source,
            "on_rebalance_complete.send()",
            "consumer.resume_partitions(",
            "consumer.perform_seek()",
            "flow_control.resume()",
            "consumer.resume_flow()",
        )
        assert positions == sorted(positions), method.__name__


def test_faust_turns_the_consumer_flow_on_to_read_changelogs_during_a_recovery() -> None:
    # the cause: the flow is on when on_recovery_completed resumes the stream partitions
    source = inspect.getsource(Recovery._restart_recovery.fun)
    restoring = source.index("Restoring state from changelog topics")
    assert source.index("consumer.resume_flow", restoring) < source.index("on_recovery_completed", restoring)


def test_resuming_the_flow_control_clears_its_queues_even_when_it_was_never_suspended() -> None:
    flow = FlowControlEvent()
    queue: FlowControlQueue[str] = FlowControlQueue(flow_control=flow, clear_on_resume=True)
    queue.put_nowait("a record fetched while the partitions were being resumed")

    flow.resume()

    assert queue.empty()


async def test_the_consumer_flow_is_stopped_when_a_rebalance_completes() -> None:
    calls: list[str] = []

    class App:
        """What the hook uses of faust.App: its signal (a real one) and its consumer."""

        def __init__(self) -> None:
            self.on_rebalance_complete: Signal[Any] = Signal()
            self.consumer = SimpleNamespace(stop_flow=lambda: calls.append("stop_flow"))

    app = App()
    stop_the_flow_while_the_streams_resume(app)

    await app.on_rebalance_complete.send(app)

    assert calls == ["stop_flow"]

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
from faust.transport.consumer import Consumer
from mode.utils.queues import FlowControlEvent

from acme_customer.entrypoints.faust_internals import PINNED_FAUST, clear_when_flow_stops, forget_unacked


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

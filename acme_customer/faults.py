"""Crash and failure points for the fault-injection tests: inactive unless ``ACME_FAULT_POINT`` names one.

A test sets ``ACME_FAULT_POINT`` (``before_commit``, ``after_commit`` or ``after_publish``) and
``ACME_FAULT_TRIGGER`` (a file path) for a worker; when the file exists, the worker removes it
and SIGKILLs itself at the next pass through that point. The production code path is the
same either way: this only decides whether to die there.

With ``ACME_FAULT_POINT=create`` and ``ACME_FAULT_KEY`` (a userId), every attempt to create a
batch holding that user fails with a transient error for as long as the trigger file exists:
a failure confined to one record, hence to one partition, at an exact moment.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable

from acme_customer.errors import StoreUnavailable

POINTS = ("before_commit", "after_commit", "after_publish")


def crash_point(name: str) -> None:
    if os.environ.get("ACME_FAULT_POINT") != name:
        return
    trigger = os.environ.get("ACME_FAULT_TRIGGER", "")
    try:
        os.remove(trigger)  # fires once per trigger file
    except OSError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


def failure_point(name: str, keys: Iterable[str]) -> None:
    """Raise a transient failure while the trigger file exists and ``ACME_FAULT_KEY`` is among ``keys``."""
    if os.environ.get("ACME_FAULT_POINT") != name:
        return
    key = os.environ.get("ACME_FAULT_KEY")
    if key and key in keys and os.path.exists(os.environ.get("ACME_FAULT_TRIGGER", "")):
        raise StoreUnavailable(f"injected transient failure at {name}")

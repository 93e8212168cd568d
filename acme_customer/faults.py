"""Crash points for the fault-injection tests: inactive unless ``ACME_FAULT_POINT`` names one.

A test sets ``ACME_FAULT_POINT`` (``before_commit``, ``after_commit`` or ``after_publish``) and
``ACME_FAULT_TRIGGER`` (a file path) for a worker; when the file exists, the worker removes it
and SIGKILLs itself at the next pass through that point. The production code path is the
same either way: this only decides whether to die there.
"""

from __future__ import annotations

import os
import signal

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

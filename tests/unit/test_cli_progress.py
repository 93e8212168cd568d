"""verify's progress on stderr when it is not a terminal: each part's total once, a line every 10 s meanwhile."""

from __future__ import annotations

import pytest

from acme_customer.entrypoints.cli import _Progress


def test_each_part_total_is_printed_once_and_a_line_every_ten_seconds_meanwhile(
    capsys: pytest.CaptureFixture[str],
) -> None:
    now = [0.0]
    progress = _Progress(clock=lambda: now[0], terminal=False)

    for done, at in ((5000, 4.0), (10000, 11.0), (15000, 12.0)):
        now[0] = at
        progress("read-model documents", done)
    now[0] = 22.0
    progress("customers", 5000)  # 10 s since the last line: printed, and it is the part's total
    now[0] = 23.0
    progress("events", 7)
    summary = progress.summary()

    assert capsys.readouterr().err.splitlines() == [
        "read-model documents: 10,000 checked (11 s)",
        "read-model documents: 15,000 checked (22 s)",
        "customers: 5,000 checked (22 s)",
        "events: 7 checked (23 s)",
    ]
    assert summary == "checked 15,000 read-model documents, 5,000 customers, 7 events in 23.0 s"

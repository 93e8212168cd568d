"""Unit-test settings: Hypothesis keeps no example database, so test runs leave no files in the repository."""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("acme-unit", database=None)
settings.load_profile("acme-unit")

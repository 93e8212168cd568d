"""Shared fixtures: the real local stack's endpoints from ``.devstack/env``.

The test command (``make test``) brings the stack up first; when run by hand, start it with
``acme-customer devstack up``. Variables already set in the environment win, so the suite can
also run against other servers.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _load_devstack_env() -> None:
    env_file = Path(os.environ.get("DEVSTACK_DIR", REPO / ".devstack")) / "env"
    if not env_file.exists():
        return
    for line in env_file.read_text().splitlines():
        if "=" not in line or line.startswith("#"):
            continue
        key, _, raw = line.partition("=")
        value = shlex.split(raw)[0] if raw else ""
        os.environ.setdefault(key, value)


_load_devstack_env()


def _need(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: start the local stack (acme-customer devstack up) or set it", pytrace=False)
    return value


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    return _need("KAFKA_BOOTSTRAP_SERVERS")


@pytest.fixture(scope="session")
def registry_url() -> str:
    return _need("SCHEMA_REGISTRY_URL")


@pytest.fixture(scope="session")
def database_url() -> str:
    return _need("DATABASE_URL")


@pytest.fixture(scope="session")
def mongodb_uri() -> str:
    return _need("MONGODB_URI")


# the tracing fixtures (an in-memory span exporter), for every tier
from tests.spans import span_exporter, spans  # noqa: E402,F401
